/*
 * OrbitDesk real time: which users of a tenant are online.
 *
 * Each socket of a user is a member of "orbit:rt:presence:{tenant}:{user}"
 * (a sorted set scored by the time the socket counts until), refreshed by
 * its heartbeat; the tenant's "orbit:rt:presence:{tenant}" holds each
 * online user with the latest of those times.  A user's first socket and
 * last one publish "presence" {userId, online} to the tenant's room.  A
 * socket of a worker that died without a word ages out with its time.
 */

#ifndef _ORBIT_PRESENCE_H_INCLUDED_
#define _ORBIT_PRESENCE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "io/orbit_redis.h"


/* the socket is alive for ttl more (0: it is gone); fire and forget */
void orbit_presence_update(ngx_str_t *tenant, ngx_str_t *user,
    ngx_str_t *sid, ngx_msec_t ttl, ngx_log_t *log);

/*
 * The tenant's online users: cmd's handler gets an array of user ids.
 * cmd lives in pool.  NGX_OK when Redis took the command.
 */
ngx_int_t orbit_presence_list(ngx_str_t *tenant, ngx_pool_t *pool,
    orbit_redis_cmd_t *cmd);


#endif /* _ORBIT_PRESENCE_H_INCLUDED_ */
