/*
 * OrbitDesk: API keys on the request path.
 *
 * A request sent with X-Api-Key and no Bearer token authenticates with the
 * key (JWT first, as the spec says).  The key's SHA-256 is looked up in a
 * shared-memory cache (hash -> key id, tenant, scopes, expiry), so a keyed
 * request costs no round trip of its own; a miss asks PostgreSQL once and
 * fills the cache, bad keys included (briefly), so a flood of one bad key
 * does not reach the database.
 *
 * Revocation: the handler that revokes or deletes a key, once its SQL has
 * committed, calls orbit_apikey_revoke(): the key is marked revoked in this
 * node's cache at once, and its hash is published on the Redis channel
 * "orbit:apikeys:revoked", on which every worker of every node listens and
 * does the same.  Entries live 30 s at most, so a node that missed a
 * message (Redis down) converges anyway.
 *
 *   http:  orbit_apikey_zone NAME SIZE;
 *
 * Without it every keyed request looks its key up in PostgreSQL.
 *
 * lastUsedAt is written at most once a minute per key (per node), in
 * batches: see orbit_apikey_cache.c.
 */

#ifndef _ORBIT_APIKEY_CACHE_H_INCLUDED_
#define _ORBIT_APIKEY_CACHE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "api/orbit_api.h"
#include "io/orbit_redis.h"


#define ORBIT_APIKEY_ZONE_DIRECTIVE_TYPE  (NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE2)

/* "wcrm_" and 43 base64url characters: 32 random bytes */
#define ORBIT_APIKEY_PREFIX       "wcrm_"
#define ORBIT_APIKEY_BYTES        32
#define ORBIT_APIKEY_LEN                                                     \
    (sizeof(ORBIT_APIKEY_PREFIX) - 1 + ORBIT_TOKEN_LEN(ORBIT_APIKEY_BYTES))

/* what lists show of a key: "wcrm_7f3a" */
#define ORBIT_APIKEY_SHOWN_LEN    (sizeof(ORBIT_APIKEY_PREFIX) - 1 + 4)

#define ORBIT_APIKEY_CHANNEL      "orbit:apikeys:revoked"


/*
 * The end of a key lookup that went to PostgreSQL: rc NGX_OK, go on (as
 * for orbit_apikey_authenticate() returning NGX_OK); NGX_DECLINED, the
 * request was answered (503/504/500) and ar->rc is what to finalize it
 * with.  The request is held until then; done takes the hold over.
 */
typedef void (*orbit_apikey_done_pt)(orbit_api_req_t *ar, ngx_int_t rc);

/* the end of orbit_apikey_revoke() when it had to wait for Redis */
typedef void (*orbit_apikey_revoked_pt)(orbit_api_req_t *ar);


/* "orbit_apikey_zone NAME SIZE": an ngx_shm_zone_t * at cmd->offset */
char *orbit_apikey_zone_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* worker start: listen for revocations (zone and rd may be NULL) */
ngx_int_t orbit_apikey_init_process(ngx_cycle_t *cycle,
    ngx_shm_zone_t *zone, orbit_redis_t *rd);

/* 1 when r authenticates with X-Api-Key: the header and no Bearer */
ngx_uint_t orbit_apikey_presented(ngx_http_request_t *r);

/*
 * Resolves the presented key, if any, into ar->who (kind ORBIT_AUTH_KEY,
 * tenant_id, key_id, scopes); an unknown, revoked or expired key leaves
 * ar->who alone, and orbit_auth_check() refuses it.
 *
 * NGX_OK: resolved (or no key): go on.  NGX_DONE: not cached, looked up in
 * PostgreSQL; the request is held and done() runs later.  NGX_DECLINED:
 * answered, return ar->rc.
 */
ngx_int_t orbit_apikey_authenticate(orbit_api_req_t *ar,
    orbit_apikey_done_pt done);

/*
 * A key was revoked or deleted (its SQL committed): hash is its SHA-256,
 * 64 hex digits.  Marks it revoked in this node's cache and publishes it
 * to the others.  NGX_OK: done (no Redis, or not connected: logged);
 * NGX_DONE: the request is held until Redis acknowledges (or fails, or
 * times out), then done(ar) runs.
 */
ngx_int_t orbit_apikey_revoke(orbit_api_req_t *ar, const u_char *hash,
    orbit_apikey_revoked_pt done);

/* scopes: "contacts:read" <-> ORBIT_SCOPE_CONTACTS_READ, ... */
ngx_uint_t orbit_apikey_scope(const u_char *name, size_t len);

/* the names of bits, ", "-separated: "contacts:read, messages:send" */
u_char *orbit_apikey_scope_names(u_char *p, u_char *last, ngx_uint_t bits,
    const char *sep);

/* bits as a PostgreSQL text[] literal, in the spec's order */
u_char *orbit_apikey_scope_array(ngx_pool_t *pool, ngx_uint_t bits);


#endif /* _ORBIT_APIKEY_CACHE_H_INCLUDED_ */
