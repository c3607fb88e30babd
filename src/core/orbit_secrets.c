/*
 * OrbitDesk core: the secrets file named by "orbit_secrets" (KEY=value
 * lines, '#' comments).  Read once, at configuration time.
 *
 *   JWT_SECRET=...         at least 32 characters; signs access tokens
 *   ENCRYPTION_KEY=...     64 hex digits (32 bytes): AES-256-GCM at rest
 *   META_APP_SECRET=...    optional: the Meta app's secret, the key of
 *                          X-Hub-Signature-256 on WhatsApp, Messenger and
 *                          Instagram webhooks
 *   META_VERIFY_TOKEN=...  optional: answers Meta's verification GET
 *   S3_ACCESS_KEY_ID=...   optional: the S3 media storage's key pair
 *   S3_SECRET_ACCESS_KEY=...
 */

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "orbit_core.h"


static char *orbit_secrets_optional(orbit_secrets_t *s, const char *key,
    size_t klen);


int
orbit_secrets_parse(const char *text, size_t len, orbit_secrets_t *s,
    char *err, size_t errlen)
{
    size_t       klen, vlen, lineno;
    const char  *p, *end, *eol, *eq, *key, *val;
    char        *dst;

    memset(s, 0, sizeof(orbit_secrets_t));

    p = text;
    end = text + len;
    lineno = 0;

    while (p < end) {
        lineno++;

        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            eol = end;
        }

        key = p;
        p = eol + 1;

        while (key < eol && (*key == ' ' || *key == '\t')) {
            key++;
        }

        vlen = (size_t) (eol - key);

        while (vlen && (key[vlen - 1] == '\r' || key[vlen - 1] == ' '
                        || key[vlen - 1] == '\t'))
        {
            vlen--;
        }

        if (vlen == 0 || key[0] == '#') {
            continue;
        }

        eq = memchr(key, '=', vlen);
        if (eq == NULL) {
            snprintf(err, errlen, "line %zu: expected KEY=value", lineno);
            return -1;
        }

        klen = (size_t) (eq - key);
        val = eq + 1;
        vlen -= klen + 1;

        if (klen == sizeof("JWT_SECRET") - 1
            && memcmp(key, "JWT_SECRET", klen) == 0)
        {
            if (vlen < 32 || vlen >= sizeof(s->jwt_secret)) {
                snprintf(err, errlen, "line %zu: JWT_SECRET must have 32 to "
                         "%zu characters", lineno, sizeof(s->jwt_secret) - 1);
                return -1;
            }

            memcpy(s->jwt_secret, val, vlen);
            s->jwt_secret_len = vlen;
            continue;
        }

        if (klen == sizeof("ENCRYPTION_KEY") - 1
            && memcmp(key, "ENCRYPTION_KEY", klen) == 0)
        {
            if (vlen != 64 || orbit_unhex(s->encryption_key, val, 64) != 0) {
                snprintf(err, errlen, "line %zu: ENCRYPTION_KEY must be 64 "
                         "hex digits", lineno);
                return -1;
            }

            s->has_encryption_key = 1;
            continue;
        }

        dst = orbit_secrets_optional(s, key, klen);

        if (dst) {
            if (vlen == 0 || vlen >= ORBIT_SECRET_MAX) {
                snprintf(err, errlen, "line %zu: %.*s must have 1 to %d "
                         "characters", lineno, (int) klen, key,
                         ORBIT_SECRET_MAX - 1);
                return -1;
            }

            memcpy(dst, val, vlen);
            dst[vlen] = '\0';
            continue;
        }

        /* other keys belong to later parts: ignored */
    }

    if (s->jwt_secret_len == 0) {
        snprintf(err, errlen, "JWT_SECRET is missing");
        return -1;
    }

    if (!s->has_encryption_key) {
        snprintf(err, errlen, "ENCRYPTION_KEY is missing");
        return -1;
    }

    return 0;
}


/* where an optional key's value goes, or NULL when it is not one */

static char *
orbit_secrets_optional(orbit_secrets_t *s, const char *key, size_t klen)
{
    size_t  i;

    static const struct {
        const char  *name;
        size_t       offset;
    } keys[] = {
        { "META_APP_SECRET", offsetof(orbit_secrets_t, meta_app_secret) },
        { "META_VERIFY_TOKEN", offsetof(orbit_secrets_t, meta_verify_token) },
        { "S3_ACCESS_KEY_ID", offsetof(orbit_secrets_t, s3_access_key_id) },
        { "S3_SECRET_ACCESS_KEY",
          offsetof(orbit_secrets_t, s3_secret_access_key) },
    };

    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strlen(keys[i].name) == klen
            && memcmp(keys[i].name, key, klen) == 0)
        {
            return (char *) s + keys[i].offset;
        }
    }

    return NULL;
}
