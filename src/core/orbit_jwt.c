/*
 * OrbitDesk core: access tokens.  HS256 JWTs (libjwt) carrying the
 * claims the seed's clients know: userId, tenantId, role, iat, exp; and
 * "account", the live-chat widget of a VISITOR's token.
 * Only HS256 is accepted: a token naming another algorithm ("none"
 * included) is invalid whatever its signature.
 */

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <jwt.h>

#include "orbit_core.h"


static int orbit_jwt_copy(char *dst, size_t size, const char *src);


char *
orbit_jwt_sign(const unsigned char *key, size_t key_len,
    const orbit_jwt_claims_t *c)
{
    char   *token;
    jwt_t  *jwt;

    if (jwt_new(&jwt) != 0) {
        return NULL;
    }

    token = NULL;

    if (jwt_set_alg(jwt, JWT_ALG_HS256, key, (int) key_len) != 0
        || jwt_add_grant(jwt, "userId", c->user_id) != 0
        || (c->tenant_id[0]
            && jwt_add_grant(jwt, "tenantId", c->tenant_id) != 0)
        || jwt_add_grant(jwt, "role", c->role) != 0
        || (c->account[0]
            && jwt_add_grant(jwt, "account", c->account) != 0)
        || jwt_add_grant_int(jwt, "iat", c->iat) != 0
        || jwt_add_grant_int(jwt, "exp", c->exp) != 0)
    {
        goto done;
    }

    token = jwt_encode_str(jwt);

done:

    jwt_free(jwt);

    return token;
}


void
orbit_jwt_free(char *token)
{
    free(token);
}


orbit_jwt_rc_e
orbit_jwt_verify(const unsigned char *key, size_t key_len, const char *token,
    long now, orbit_jwt_claims_t *c)
{
    long             exp;
    jwt_t           *jwt;
    const char      *v;
    orbit_jwt_rc_e   rc;

    memset(c, 0, sizeof(orbit_jwt_claims_t));

    if (jwt_decode(&jwt, token, key, (int) key_len) != 0) {
        return ORBIT_JWT_INVALID;
    }

    rc = ORBIT_JWT_INVALID;

    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        goto done;
    }

    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0) {
        goto done;
    }

    if (orbit_jwt_copy(c->user_id, sizeof(c->user_id),
                       jwt_get_grant(jwt, "userId")) != 0
        || orbit_jwt_copy(c->role, sizeof(c->role),
                          jwt_get_grant(jwt, "role")) != 0)
    {
        goto done;
    }

    v = jwt_get_grant(jwt, "tenantId");
    if (v && orbit_jwt_copy(c->tenant_id, sizeof(c->tenant_id), v) != 0) {
        goto done;
    }

    v = jwt_get_grant(jwt, "account");
    if (v && orbit_jwt_copy(c->account, sizeof(c->account), v) != 0) {
        goto done;
    }

    errno = 0;
    c->iat = jwt_get_grant_int(jwt, "iat");
    c->exp = exp;

    rc = (exp <= now) ? ORBIT_JWT_EXPIRED : ORBIT_JWT_OK;

done:

    jwt_free(jwt);

    return rc;
}


static int
orbit_jwt_copy(char *dst, size_t size, const char *src)
{
    size_t  len;

    if (src == NULL || (len = strlen(src)) == 0 || len >= size) {
        return -1;
    }

    memcpy(dst, src, len + 1);

    return 0;
}
