/*
 * OrbitDesk: hiredis async driven by nginx events.
 *
 * Per worker: one command connection and one subscriber connection to the
 * same server, each reconnected with backoff after an error.  hiredis 0.14
 * has no timeouts of its own: every command carries an nginx timer.  The
 * server is named by address only (hiredis resolves names blocking).
 */

#ifndef _ORBIT_REDIS_H_INCLUDED_
#define _ORBIT_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <hiredis/hiredis.h>


typedef struct orbit_redis_s      orbit_redis_t;
typedef struct orbit_redis_cmd_s  orbit_redis_cmd_t;


typedef struct {
    ngx_addr_t                  *addr;         /* resolved at config time */
    ngx_str_t                    host;         /* numeric, for hiredis */
    in_port_t                    port;
    ngx_msec_t                   timeout;      /* per command */
} orbit_redis_conf_t;


/*
 * Called exactly once per accepted command: reply is NULL when the command
 * failed (cmd->error says why, cmd->timedout when the timer fired).  The
 * reply belongs to hiredis and is valid only during the call.
 */
typedef void (*orbit_redis_reply_pt)(orbit_redis_cmd_t *cmd,
    redisReply *reply);

/* A message published on a subscribed channel; valid during the call. */
typedef void (*orbit_redis_message_pt)(void *data, ngx_str_t *channel,
    ngx_str_t *payload);


struct orbit_redis_cmd_s {
    orbit_redis_reply_pt         handler;
    void                        *data;
    ngx_msec_t                   timeout;      /* 0: the server default */

    ngx_str_t                    error;        /* out, in cmd's pool */
    unsigned                     timedout:1;   /* out */

    /* private */
    void                        *slot;
    ngx_pool_t                  *pool;
};


orbit_redis_t *orbit_redis_create(ngx_cycle_t *cycle,
    orbit_redis_conf_t *conf);
void orbit_redis_destroy(orbit_redis_t *rd);

/* ready: the command connection is up */
ngx_uint_t orbit_redis_ready(orbit_redis_t *rd);

/* cmd lives in pool; destroying the pool cancels it (no handler call). */
orbit_redis_cmd_t *orbit_redis_cmd_create(ngx_pool_t *pool);

/*
 * NGX_OK: accepted, the handler will run later (never from inside this
 * call).  NGX_DECLINED: not connected, cmd->error set, no handler call.
 * NGX_ERROR: refused (out of memory, or a command that would change the
 * connection all callers share: SUBSCRIBE, SELECT, MULTI, CLIENT REPLY...),
 * cmd->error set, no handler call.
 */
ngx_int_t orbit_redis_command(orbit_redis_t *rd, orbit_redis_cmd_t *cmd,
    int argc, const char **argv, const size_t *argvlen);

/*
 * Subscriptions outlive reconnects: the driver re-SUBSCRIBEs them.  Several
 * subscribers may share a channel; the server subscription is dropped with
 * the last one.  Returns an opaque handle for orbit_redis_unsubscribe.
 */
void *orbit_redis_subscribe(orbit_redis_t *rd, ngx_str_t *channel,
    orbit_redis_message_pt handler, void *data);
void orbit_redis_unsubscribe(orbit_redis_t *rd, void *sub);


#endif /* _ORBIT_REDIS_H_INCLUDED_ */
