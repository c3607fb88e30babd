/*
 * OrbitDesk: hiredis async driven by nginx events.
 *
 * Two links per worker, each a hiredis async context whose socket is
 * watched through an ngx_connection_t: "command" carries request/reply
 * traffic, "subscriber" carries SUBSCRIBE and the pushed messages.
 *
 * hiredis owns the socket: when a context goes away we only remove the
 * nginx events and return the ngx_connection_t to the free list; the fd
 * is closed by hiredis (redisFree).
 *
 * Every accepted command gets a slot owned by the driver, given to hiredis
 * as privdata; the caller's cmd (in the caller's pool) is reachable from
 * the slot only while the command is pending, so a reply that arrives
 * after a timeout or after the caller's pool is gone finds a detached slot
 * and is dropped.  hiredis calls every reply callback exactly once (with a
 * NULL reply when the context is freed), and that call releases the slot.
 *
 * The timers' ev->data is rd->ident, a dummy connection with fd -1, as
 * debug logging reads ngx_event_ident(ev->data); the handlers find their
 * link or slot from the event's address.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "io/orbit_redis.h"


#define ORBIT_REDIS_BACKOFF_MIN     100
#define ORBIT_REDIS_BACKOFF_MAX     2000
#define ORBIT_REDIS_TIMEOUT         1000
#define ORBIT_REDIS_FREE_SLOTS      256


typedef struct orbit_redis_link_s  orbit_redis_link_t;


struct orbit_redis_link_s {
    orbit_redis_t               *rd;
    redisAsyncContext           *ac;           /* NULL: not connected */
    ngx_connection_t            *conn;
    ngx_event_t                  timer;        /* (re)connect, stayed up */
    ngx_msec_t                   backoff;      /* the next reconnect delay */
    const char                  *name;

    unsigned                     connected:1;
    unsigned                     failing:1;    /* inside an outage */
    unsigned                     subscriber:1;
};


typedef struct {
    orbit_redis_t               *rd;
    orbit_redis_cmd_t           *cmd;          /* NULL once detached */
    ngx_pool_cleanup_t          *cln;          /* in cmd->pool */
    ngx_queue_t                  queue;        /* rd->busy or rd->free */
    ngx_event_t                  timer;
} orbit_redis_slot_t;


typedef struct {
    ngx_str_node_t               sn;           /* the channel name */
    ngx_queue_t                  subs;
    ngx_uint_t                   nsubs;        /* live subscribers */
    ngx_uint_t                   delivering;
} orbit_redis_channel_t;


typedef struct {
    ngx_queue_t                  queue;
    orbit_redis_channel_t       *channel;
    orbit_redis_message_pt       handler;      /* NULL: gone, not yet freed */
    void                        *data;
} orbit_redis_sub_t;


struct orbit_redis_s {
    orbit_redis_conf_t          *conf;
    ngx_log_t                   *log;
    char                        *host;         /* NUL-terminated */
    ngx_str_t                    addr;         /* host:port, for logs */

    orbit_redis_link_t           cmd;
    orbit_redis_link_t           sub;

    ngx_connection_t             ident;        /* ev->data of our timers */

    ngx_queue_t                  busy;         /* slots hiredis still holds */
    ngx_queue_t                  free;
    ngx_uint_t                   nfree;

    ngx_rbtree_t                 channels;
    ngx_rbtree_node_t            sentinel;

    unsigned                     destroying:1;
};


static void orbit_redis_connect(orbit_redis_link_t *link);
static void orbit_redis_link_timer_handler(ngx_event_t *ev);
static void orbit_redis_link_stable(orbit_redis_link_t *link);
static void orbit_redis_connect_handler(const redisAsyncContext *ac,
    int status);
static void orbit_redis_disconnect_handler(const redisAsyncContext *ac,
    int status);
static void orbit_redis_link_failed(orbit_redis_link_t *link,
    const char *reason);
static void orbit_redis_link_lost(orbit_redis_link_t *link);
static void orbit_redis_link_drop(orbit_redis_link_t *link);

static void orbit_redis_read_handler(ngx_event_t *ev);
static void orbit_redis_write_handler(ngx_event_t *ev);
static void orbit_redis_add_read(void *privdata);
static void orbit_redis_del_read(void *privdata);
static void orbit_redis_add_write(void *privdata);
static void orbit_redis_del_write(void *privdata);
static void orbit_redis_cleanup(void *privdata);

static orbit_redis_slot_t *orbit_redis_slot_get(orbit_redis_t *rd);
static void orbit_redis_slot_detach(orbit_redis_slot_t *slot);
static void orbit_redis_slot_release(orbit_redis_slot_t *slot);
static void orbit_redis_slot_cleanup(void *data);
static void orbit_redis_reply_handler(redisAsyncContext *ac, void *r,
    void *privdata);
static void orbit_redis_timeout_handler(ngx_event_t *ev);
static const char *orbit_redis_refused(int argc, const char **argv,
    const size_t *argvlen);
static ngx_uint_t orbit_redis_arg_is(const char *arg, size_t len,
    const char **names);

static orbit_redis_channel_t *orbit_redis_channel_lookup(orbit_redis_t *rd,
    ngx_str_t *name);
static void orbit_redis_channel_send(orbit_redis_t *rd,
    orbit_redis_channel_t *ch, const char *verb);
static void orbit_redis_channel_sweep(orbit_redis_t *rd,
    orbit_redis_channel_t *ch);
static void orbit_redis_resubscribe(orbit_redis_t *rd);
static void orbit_redis_message_handler(redisAsyncContext *ac, void *r,
    void *privdata);


orbit_redis_t *
orbit_redis_create(ngx_cycle_t *cycle, orbit_redis_conf_t *conf)
{
    u_char         *p;
    size_t          size;
    orbit_redis_t  *rd;

    size = sizeof(orbit_redis_t) + conf->host.len + 1
           + conf->host.len + sizeof("[]:65535") - 1;

    rd = ngx_calloc(size, cycle->log);
    if (rd == NULL) {
        return NULL;
    }

    rd->conf = conf;
    rd->log = cycle->log;

    p = (u_char *) (rd + 1);
    rd->host = (char *) p;
    p = ngx_cpymem(p, conf->host.data, conf->host.len);
    *p++ = '\0';

    rd->addr.data = p;
    if (ngx_strlchr(conf->host.data, conf->host.data + conf->host.len, ':')) {
        p = ngx_sprintf(p, "[%V]:%d", &conf->host, (int) conf->port);

    } else {
        p = ngx_sprintf(p, "%V:%d", &conf->host, (int) conf->port);
    }
    rd->addr.len = p - rd->addr.data;

    ngx_queue_init(&rd->busy);
    ngx_queue_init(&rd->free);
    ngx_rbtree_init(&rd->channels, &rd->sentinel, ngx_str_rbtree_insert_value);

    rd->ident.fd = (ngx_socket_t) -1;
    rd->ident.data = rd;
    rd->ident.log = rd->log;

    rd->cmd.rd = rd;
    rd->cmd.name = "command";
    rd->sub.rd = rd;
    rd->sub.name = "subscriber";
    rd->sub.subscriber = 1;

    rd->cmd.timer.handler = orbit_redis_link_timer_handler;
    rd->cmd.timer.data = &rd->ident;
    rd->cmd.timer.log = rd->log;
    rd->cmd.timer.cancelable = 1;
    rd->cmd.backoff = ORBIT_REDIS_BACKOFF_MIN;

    rd->sub.timer.handler = orbit_redis_link_timer_handler;
    rd->sub.timer.data = &rd->ident;
    rd->sub.timer.log = rd->log;
    rd->sub.timer.cancelable = 1;
    rd->sub.backoff = ORBIT_REDIS_BACKOFF_MIN;

    orbit_redis_connect(&rd->cmd);
    orbit_redis_connect(&rd->sub);

    return rd;
}


void
orbit_redis_destroy(orbit_redis_t *rd)
{
    ngx_queue_t            *q;
    ngx_rbtree_node_t      *node;
    orbit_redis_sub_t      *s;
    orbit_redis_slot_t     *slot;
    orbit_redis_channel_t  *ch;

    if (rd == NULL) {
        return;
    }

    rd->destroying = 1;

    /* nobody hears about pending commands any more */

    for (q = ngx_queue_head(&rd->busy);
         q != ngx_queue_sentinel(&rd->busy);
         q = ngx_queue_next(q))
    {
        slot = ngx_queue_data(q, orbit_redis_slot_t, queue);
        orbit_redis_slot_detach(slot);
    }

    /*
     * redisAsyncFree() runs every pending callback with a NULL reply (the
     * slots go back to the free list), calls our cleanup hook (the nginx
     * connection is released) and closes the socket.
     */

    if (rd->cmd.timer.timer_set) {
        ngx_del_timer(&rd->cmd.timer);
    }

    if (rd->sub.timer.timer_set) {
        ngx_del_timer(&rd->sub.timer);
    }

    orbit_redis_link_drop(&rd->cmd);
    orbit_redis_link_drop(&rd->sub);

    while (!ngx_queue_empty(&rd->busy)) {
        /* not expected: hiredis gave every callback back */
        q = ngx_queue_head(&rd->busy);
        slot = ngx_queue_data(q, orbit_redis_slot_t, queue);
        ngx_queue_remove(q);
        ngx_free(slot);
    }

    while (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        slot = ngx_queue_data(q, orbit_redis_slot_t, queue);
        ngx_queue_remove(q);
        ngx_free(slot);
    }

    while (rd->channels.root != rd->channels.sentinel) {
        node = ngx_rbtree_min(rd->channels.root, rd->channels.sentinel);
        ngx_rbtree_delete(&rd->channels, node);

        ch = (orbit_redis_channel_t *) node;

        while (!ngx_queue_empty(&ch->subs)) {
            q = ngx_queue_head(&ch->subs);
            s = ngx_queue_data(q, orbit_redis_sub_t, queue);
            ngx_queue_remove(q);
            ngx_free(s);
        }

        ngx_free(ch);
    }

    ngx_free(rd);
}


ngx_uint_t
orbit_redis_ready(orbit_redis_t *rd)
{
    return rd != NULL && rd->cmd.connected;
}


orbit_redis_cmd_t *
orbit_redis_cmd_create(ngx_pool_t *pool)
{
    orbit_redis_cmd_t  *cmd;

    cmd = ngx_pcalloc(pool, sizeof(orbit_redis_cmd_t));
    if (cmd == NULL) {
        return NULL;
    }

    cmd->pool = pool;

    return cmd;
}


ngx_int_t
orbit_redis_command(orbit_redis_t *rd, orbit_redis_cmd_t *cmd, int argc,
    const char **argv, const size_t *argvlen)
{
    ngx_msec_t           timeout;
    const char          *refused;
    orbit_redis_slot_t  *slot;
    ngx_pool_cleanup_t  *cln;

    cmd->timedout = 0;
    ngx_str_null(&cmd->error);

    if (argc <= 0 || argv == NULL || cmd->handler == NULL) {
        ngx_str_set(&cmd->error, "redis: bad command");
        return NGX_ERROR;
    }

    if (cmd->slot != NULL) {
        ngx_str_set(&cmd->error, "redis: command already pending");
        return NGX_ERROR;
    }

    refused = orbit_redis_refused(argc, argv, argvlen);

    if (refused != NULL) {
        cmd->error.data = (u_char *) refused;
        cmd->error.len = ngx_strlen(refused);
        return NGX_ERROR;
    }

    if (rd == NULL || !rd->cmd.connected) {
        ngx_str_set(&cmd->error, "redis unavailable");
        return NGX_DECLINED;
    }

    slot = orbit_redis_slot_get(rd);
    if (slot == NULL) {
        return NGX_ERROR;
    }

    if (cmd->pool) {
        cln = ngx_pool_cleanup_add(cmd->pool, 0);
        if (cln == NULL) {
            orbit_redis_slot_release(slot);
            return NGX_ERROR;
        }

        cln->handler = orbit_redis_slot_cleanup;
        cln->data = slot;
        slot->cln = cln;
    }

    if (redisAsyncCommandArgv(rd->cmd.ac, orbit_redis_reply_handler, slot,
                              argc, argv, argvlen)
        != REDIS_OK)
    {
        orbit_redis_slot_detach(slot);
        orbit_redis_slot_release(slot);
        ngx_str_set(&cmd->error, "redis unavailable");
        return NGX_DECLINED;
    }

    slot->cmd = cmd;
    cmd->slot = slot;

    timeout = cmd->timeout ? cmd->timeout : rd->conf->timeout;
    if (timeout == 0) {
        timeout = ORBIT_REDIS_TIMEOUT;
    }

    ngx_add_timer(&slot->timer, timeout);

    return NGX_OK;
}


void *
orbit_redis_subscribe(orbit_redis_t *rd, ngx_str_t *channel,
    orbit_redis_message_pt handler, void *data)
{
    orbit_redis_sub_t      *s;
    orbit_redis_channel_t  *ch;

    if (rd == NULL || handler == NULL || channel->len == 0) {
        return NULL;
    }

    s = ngx_alloc(sizeof(orbit_redis_sub_t), rd->log);
    if (s == NULL) {
        return NULL;
    }

    ch = orbit_redis_channel_lookup(rd, channel);

    if (ch == NULL) {
        ch = ngx_calloc(sizeof(orbit_redis_channel_t) + channel->len,
                        rd->log);
        if (ch == NULL) {
            ngx_free(s);
            return NULL;
        }

        ch->sn.str.len = channel->len;
        ch->sn.str.data = (u_char *) (ch + 1);
        ngx_memcpy(ch->sn.str.data, channel->data, channel->len);
        ch->sn.node.key = ngx_crc32_long(channel->data, channel->len);

        ngx_queue_init(&ch->subs);
        ngx_rbtree_insert(&rd->channels, &ch->sn.node);
    }

    s->channel = ch;
    s->handler = handler;
    s->data = data;
    ngx_queue_insert_tail(&ch->subs, &s->queue);

    if (ch->nsubs++ == 0) {
        orbit_redis_channel_send(rd, ch, "SUBSCRIBE");
    }

    return s;
}


void
orbit_redis_unsubscribe(orbit_redis_t *rd, void *sub)
{
    orbit_redis_sub_t      *s;
    orbit_redis_channel_t  *ch;

    s = sub;

    if (rd == NULL || s == NULL || s->handler == NULL) {
        return;
    }

    ch = s->channel;
    ch->nsubs--;

    if (ch->delivering) {
        /* the delivery loop holds pointers into the list: free later */
        s->handler = NULL;

    } else {
        ngx_queue_remove(&s->queue);
        ngx_free(s);
    }

    if (ch->nsubs == 0) {
        orbit_redis_channel_send(rd, ch, "UNSUBSCRIBE");

        if (!ch->delivering) {
            ngx_rbtree_delete(&rd->channels, &ch->sn.node);
            ngx_free(ch);
        }
    }
}


/* links */


static void
orbit_redis_connect(orbit_redis_link_t *link)
{
    ngx_msec_t          timeout;
    orbit_redis_t      *rd;
    ngx_connection_t   *c;
    redisAsyncContext  *ac;

    rd = link->rd;

    /* a numeric host: hiredis does not resolve it */

    ac = redisAsyncConnect(rd->host, (int) rd->conf->port);

    if (ac == NULL) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "redis %s connection to %V: out of memory",
                      link->name, &rd->addr);
        orbit_redis_link_lost(link);
        return;
    }

    if (ac->err) {
        orbit_redis_link_failed(link, ac->errstr);
        redisAsyncFree(ac);
        orbit_redis_link_lost(link);
        return;
    }

    c = ngx_get_connection(ac->c.fd, rd->log);

    if (c == NULL) {
        redisAsyncFree(ac);
        orbit_redis_link_lost(link);
        return;
    }

    c->data = link;
    c->read->handler = orbit_redis_read_handler;
    c->write->handler = orbit_redis_write_handler;
    c->read->log = rd->log;
    c->write->log = rd->log;

    ac->data = link;
    ac->ev.data = link;
    ac->ev.addRead = orbit_redis_add_read;
    ac->ev.delRead = orbit_redis_del_read;
    ac->ev.addWrite = orbit_redis_add_write;
    ac->ev.delWrite = orbit_redis_del_write;
    ac->ev.cleanup = orbit_redis_cleanup;

    link->ac = ac;
    link->conn = c;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "redis %s connecting to %V, fd:%d",
                   link->name, &rd->addr, c->fd);

    /* the connect callback waits for writability: hooks are set by now */

    redisAsyncSetConnectCallback(ac, orbit_redis_connect_handler);
    redisAsyncSetDisconnectCallback(ac, orbit_redis_disconnect_handler);

    timeout = rd->conf->timeout ? rd->conf->timeout : ORBIT_REDIS_TIMEOUT;
    ngx_add_timer(&link->timer, timeout);
}


static void
orbit_redis_link_timer_handler(ngx_event_t *ev)
{
    orbit_redis_link_t  *link;

    link = (orbit_redis_link_t *) ((u_char *) ev
                                   - offsetof(orbit_redis_link_t, timer));

    if (link->ac == NULL) {
        orbit_redis_connect(link);
        return;
    }

    if (!link->connected) {
        orbit_redis_link_failed(link, "timed out");
        orbit_redis_link_drop(link);
        return;
    }

    orbit_redis_link_stable(link);
}


/*
 * The link has stayed up for ORBIT_REDIS_BACKOFF_MAX: only now is the
 * outage over.  A server that accepts and then rejects us (maxclients,
 * protected mode, -NOAUTH) closes the connection before this, so its
 * reconnects keep backing off instead of coming every 100 ms, and the
 * outage is not reported over and over as "restored" and "lost".
 */

static void
orbit_redis_link_stable(orbit_redis_link_t *link)
{
    link->backoff = ORBIT_REDIS_BACKOFF_MIN;

    if (link->failing) {
        ngx_log_error(NGX_LOG_WARN, link->rd->log, 0,
                      "redis %s connection to %V restored",
                      link->name, &link->rd->addr);
        link->failing = 0;
    }
}


static void
orbit_redis_connect_handler(const redisAsyncContext *ac, int status)
{
    orbit_redis_t       *rd;
    orbit_redis_link_t  *link;

    link = ac->data;
    rd = link->rd;

    if (status != REDIS_OK) {
        orbit_redis_link_failed(link, ac->errstr);

        /* hiredis frees the context when we return */
        orbit_redis_link_lost(link);
        return;
    }

    link->connected = 1;

    ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                  "redis %s connection to %V established",
                  link->name, &rd->addr);

    /* the connect timeout gives way to the "stayed up" timer */

    if (link->timer.timer_set) {
        ngx_del_timer(&link->timer);
    }

    ngx_add_timer(&link->timer, ORBIT_REDIS_BACKOFF_MAX);

    /*
     * Nothing is sent on the subscriber connection after SUBSCRIBE, so a
     * peer that vanished without a FIN or RST (a host gone, a NAT entry
     * expired) would never be noticed: TCP keepalive (15 s) notices it.
     * Not a PING: hiredis 0.14 mishandles the reply to a PING sent in
     * subscribed mode.
     */

    if (redisEnableKeepAlive(&link->ac->c) != REDIS_OK) {
        ngx_log_error(NGX_LOG_WARN, rd->log, 0,
                      "redis %s connection to %V: keepalive: %s",
                      link->name, &rd->addr, link->ac->c.errstr);

        /* not fatal: do not let hiredis report it at disconnect */
        link->ac->c.err = 0;
        link->ac->c.errstr[0] = '\0';
    }

    if (link->subscriber) {
        orbit_redis_resubscribe(rd);
    }
}


static void
orbit_redis_disconnect_handler(const redisAsyncContext *ac, int status)
{
    ngx_uint_t           level;
    orbit_redis_t       *rd;
    orbit_redis_link_t  *link;

    link = ac->data;
    rd = link->rd;

    /*
     * Without an error we closed it ourselves, and said why.  Within an
     * outage (the connection did not stay up) the loss is logged at info.
     */

    if (ac->err && !rd->destroying) {
        level = link->failing ? NGX_LOG_INFO : NGX_LOG_ERR;
        link->failing = 1;

        ngx_log_error(level, rd->log, 0,
                      "redis %s connection to %V lost: %s",
                      link->name, &rd->addr, ac->errstr);
    }

    orbit_redis_link_lost(link);
}


/* An outage is reported once; the retries (every 2 s at most) at info. */

static void
orbit_redis_link_failed(orbit_redis_link_t *link, const char *reason)
{
    ngx_uint_t  level;

    level = link->failing ? NGX_LOG_INFO : NGX_LOG_ERR;
    link->failing = 1;

    ngx_log_error(level, link->rd->log, 0,
                  "redis %s connection to %V failed: %s",
                  link->name, &link->rd->addr, reason);
}


/*
 * The link's context is gone (or going): come back after a backoff, which
 * keeps doubling until a connection stays up (orbit_redis_link_stable).
 */

static void
orbit_redis_link_lost(orbit_redis_link_t *link)
{
    orbit_redis_t  *rd;

    rd = link->rd;

    link->ac = NULL;
    link->connected = 0;

    if (rd->destroying) {
        return;
    }

    /* the connect timeout or the "stayed up" timer gives way */

    if (link->timer.timer_set) {
        ngx_del_timer(&link->timer);
    }

    ngx_add_timer(&link->timer, link->backoff);

    link->backoff *= 2;
    if (link->backoff > ORBIT_REDIS_BACKOFF_MAX) {
        link->backoff = ORBIT_REDIS_BACKOFF_MAX;
    }
}


/*
 * Closes the link's context from outside any hiredis callback: pending
 * callbacks get NULL replies, then the backoff timer brings it back.
 */

static void
orbit_redis_link_drop(orbit_redis_link_t *link)
{
    redisAsyncContext  *ac;

    ac = link->ac;

    if (ac == NULL) {
        return;
    }

    link->connected = 0;

    redisAsyncFree(ac);

    if (link->ac != NULL) {
        /* not connected yet: hiredis called no disconnect callback */
        orbit_redis_link_lost(link);
    }
}


/* nginx events for the hiredis socket */


static void
orbit_redis_read_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    orbit_redis_link_t  *link;

    c = ev->data;
    link = c->data;

    if (link->ac != NULL && link->conn == c) {
        redisAsyncHandleRead(link->ac);
    }
}


static void
orbit_redis_write_handler(ngx_event_t *ev)
{
    ngx_connection_t    *c;
    orbit_redis_link_t  *link;

    c = ev->data;
    link = c->data;

    if (link->ac != NULL && link->conn == c) {
        redisAsyncHandleWrite(link->ac);
    }
}


/*
 * Level-triggered: hiredis reads at most 16K per call and writes once per
 * call, so it must be called again while data or room remains.
 */

static void
orbit_redis_add_read(void *privdata)
{
    orbit_redis_link_t  *link = privdata;

    ngx_connection_t  *c;

    c = link->conn;

    if (c != NULL && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "redis: could not add the read event");
        }
    }
}


static void
orbit_redis_del_read(void *privdata)
{
    orbit_redis_link_t  *link = privdata;

    ngx_connection_t  *c;

    c = link->conn;

    if (c != NULL && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "redis: could not delete the read event");
        }
    }
}


static void
orbit_redis_add_write(void *privdata)
{
    orbit_redis_link_t  *link = privdata;

    ngx_connection_t  *c;

    c = link->conn;

    if (c != NULL && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "redis: could not add the write event");
        }
    }
}


static void
orbit_redis_del_write(void *privdata)
{
    orbit_redis_link_t  *link = privdata;

    ngx_connection_t  *c;

    c = link->conn;

    if (c != NULL && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, c->log, 0,
                          "redis: could not delete the write event");
        }
    }
}


/*
 * hiredis is about to close the socket: forget it in nginx without
 * closing it (ngx_close_connection() would close hiredis's fd a second
 * time).  Safe to call more than once for one context.
 */

static void
orbit_redis_cleanup(void *privdata)
{
    orbit_redis_link_t  *link = privdata;

    ngx_connection_t  *c;

    c = link->conn;

    if (c == NULL) {
        return;
    }

    link->conn = NULL;

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    /* the order of ngx_close_connection(): files[] is indexed by c->fd */

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}


/* commands */


static orbit_redis_slot_t *
orbit_redis_slot_get(orbit_redis_t *rd)
{
    ngx_queue_t         *q;
    orbit_redis_slot_t  *slot;

    if (!ngx_queue_empty(&rd->free)) {
        q = ngx_queue_head(&rd->free);
        ngx_queue_remove(q);
        rd->nfree--;
        slot = ngx_queue_data(q, orbit_redis_slot_t, queue);

    } else {
        slot = ngx_alloc(sizeof(orbit_redis_slot_t), rd->log);
        if (slot == NULL) {
            return NULL;
        }
    }

    ngx_memzero(slot, sizeof(orbit_redis_slot_t));

    /*
     * The timer is not cancelable: a worker that shuts down gracefully
     * waits for its pending commands (their timeout at most), so the
     * requests behind them still get an answer.
     */

    slot->rd = rd;
    slot->timer.handler = orbit_redis_timeout_handler;
    slot->timer.data = &rd->ident;
    slot->timer.log = rd->log;

    ngx_queue_insert_tail(&rd->busy, &slot->queue);

    return slot;
}


static void
orbit_redis_slot_detach(orbit_redis_slot_t *slot)
{
    if (slot->timer.timer_set) {
        ngx_del_timer(&slot->timer);
    }

    if (slot->cln) {
        slot->cln->handler = NULL;
        slot->cln = NULL;
    }

    if (slot->cmd) {
        slot->cmd->slot = NULL;
        slot->cmd = NULL;
    }
}


static void
orbit_redis_slot_release(orbit_redis_slot_t *slot)
{
    orbit_redis_t  *rd;

    rd = slot->rd;

    ngx_queue_remove(&slot->queue);

    if (rd->nfree < ORBIT_REDIS_FREE_SLOTS) {
        ngx_queue_insert_head(&rd->free, &slot->queue);
        rd->nfree++;
        return;
    }

    ngx_free(slot);
}


/* The caller's pool is going away: its cmd must not be touched again. */

static void
orbit_redis_slot_cleanup(void *data)
{
    orbit_redis_slot_t  *slot = data;

    slot->cln = NULL;
    orbit_redis_slot_detach(slot);
}


static void
orbit_redis_reply_handler(redisAsyncContext *ac, void *r, void *privdata)
{
    orbit_redis_slot_t  *slot = privdata;

    orbit_redis_cmd_t  *cmd;

    cmd = slot->cmd;

    orbit_redis_slot_detach(slot);
    orbit_redis_slot_release(slot);

    if (cmd == NULL) {
        /* timed out, cancelled, or the driver is going away */
        return;
    }

    if (r == NULL) {
        ngx_str_set(&cmd->error, "redis connection lost");
    }

    cmd->handler(cmd, r);
}


static void
orbit_redis_timeout_handler(ngx_event_t *ev)
{
    orbit_redis_t       *rd;
    orbit_redis_cmd_t   *cmd;
    orbit_redis_slot_t  *slot;

    slot = (orbit_redis_slot_t *) ((u_char *) ev
                                   - offsetof(orbit_redis_slot_t, timer));

    rd = slot->rd;
    cmd = slot->cmd;

    /* the slot stays busy until hiredis hands it back */

    orbit_redis_slot_detach(slot);

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "redis command to %V timed out, reconnecting", &rd->addr);

    /*
     * A server that does not answer within the timeout is not trusted
     * with the next command: the connection is dropped (the other pending
     * commands fail) and comes back after a backoff.  Commands issued
     * from now on, by the handlers below too, are declined.
     */

    rd->cmd.connected = 0;
    rd->cmd.failing = 1;

    /*
     * The timed-out command's handler runs first: the other handlers that
     * orbit_redis_link_drop() runs may finalize a request whose pool also
     * holds this cmd.
     */

    if (cmd != NULL) {
        cmd->timedout = 1;
        ngx_str_set(&cmd->error, "redis timeout");
        cmd->handler(cmd, NULL);
    }

    /* cmd may be gone by now; the slot is freed here */

    orbit_redis_link_drop(&rd->cmd);
}


/*
 * Commands the shared command connection must not carry.  Every caller in
 * the worker shares it, and hiredis matches replies to callers by order:
 *
 *   SUBSCRIBE and friends, MONITOR: the connection would change mode and
 *     hiredis would call the slot's callback more than once;
 *   CLIENT REPLY OFF|SKIP: the server stops answering while hiredis still
 *     waits, so every later reply goes to the wrong caller;
 *   SELECT: every other caller would switch database with it, and after a
 *     reconnect the connection would silently be back on database 0;
 *   MULTI, EXEC, DISCARD, WATCH, UNWATCH: a transaction would take in the
 *     other callers' commands (they get +QUEUED, and their results go to
 *     whoever sends EXEC), and WATCH would make EXECs of others fail.
 */

static const char *
orbit_redis_refused(int argc, const char **argv, const size_t *argvlen)
{
    size_t  len;

    static const char  *pubsub[] = {
        "subscribe", "psubscribe", "ssubscribe",
        "unsubscribe", "punsubscribe", "sunsubscribe",
        "monitor", NULL
    };

    static const char  *state[] = {
        "select", "multi", "exec", "discard", "watch", "unwatch", NULL
    };

    static const char  *client[] = { "client", NULL };
    static const char  *reply[] = { "reply", NULL };

    len = argvlen ? argvlen[0] : ngx_strlen(argv[0]);

    if (orbit_redis_arg_is(argv[0], len, pubsub)) {
        return "redis: use orbit_redis_subscribe()";
    }

    if (orbit_redis_arg_is(argv[0], len, state)) {
        return "redis: command would change the shared connection's state";
    }

    if (argc > 1 && orbit_redis_arg_is(argv[0], len, client)) {
        len = argvlen ? argvlen[1] : ngx_strlen(argv[1]);

        if (orbit_redis_arg_is(argv[1], len, reply)) {
            return "redis: CLIENT REPLY would misalign replies";
        }
    }

    return NULL;
}


static ngx_uint_t
orbit_redis_arg_is(const char *arg, size_t len, const char **names)
{
    ngx_uint_t  i;

    for (i = 0; names[i]; i++) {
        if (ngx_strlen(names[i]) == len
            && ngx_strncasecmp((u_char *) arg, (u_char *) names[i], len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* subscriptions */


static orbit_redis_channel_t *
orbit_redis_channel_lookup(orbit_redis_t *rd, ngx_str_t *name)
{
    uint32_t         hash;
    ngx_str_node_t  *sn;

    hash = ngx_crc32_long(name->data, name->len);

    sn = ngx_str_rbtree_lookup(&rd->channels, name, hash);

    return (orbit_redis_channel_t *) sn;
}


static void
orbit_redis_channel_send(orbit_redis_t *rd, orbit_redis_channel_t *ch,
    const char *verb)
{
    const char  *argv[2];
    size_t       argvlen[2];

    if (!rd->sub.connected) {
        /* the connect handler subscribes what is live by then */
        return;
    }

    argv[0] = verb;
    argvlen[0] = ngx_strlen(verb);
    argv[1] = (const char *) ch->sn.str.data;
    argvlen[1] = ch->sn.str.len;

    /*
     * One callback for the whole subscriber context: hiredis 0.14 keeps
     * it per channel and counts pending SUBSCRIBEs, so an UNSUBSCRIBE
     * racing a new SUBSCRIBE of the same channel keeps the entry.
     * UNSUBSCRIBE fails only when hiredis already left subscribed mode,
     * which means the server holds no subscription either.
     */

    if (redisAsyncCommandArgv(rd->sub.ac, orbit_redis_message_handler, rd,
                              2, argv, argvlen)
        != REDIS_OK)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "redis %s \"%V\" not sent", verb, &ch->sn.str);
    }
}


static void
orbit_redis_channel_sweep(orbit_redis_t *rd, orbit_redis_channel_t *ch)
{
    ngx_queue_t        *q, *next;
    orbit_redis_sub_t  *s;

    for (q = ngx_queue_head(&ch->subs);
         q != ngx_queue_sentinel(&ch->subs);
         q = next)
    {
        next = ngx_queue_next(q);
        s = ngx_queue_data(q, orbit_redis_sub_t, queue);

        if (s->handler == NULL) {
            ngx_queue_remove(q);
            ngx_free(s);
        }
    }

    if (ch->nsubs == 0) {
        ngx_rbtree_delete(&rd->channels, &ch->sn.node);
        ngx_free(ch);
    }
}


static void
orbit_redis_resubscribe(orbit_redis_t *rd)
{
    ngx_uint_t              n;
    ngx_rbtree_node_t      *node, *root, *sentinel;
    orbit_redis_channel_t  *ch;

    root = rd->channels.root;
    sentinel = rd->channels.sentinel;

    if (root == sentinel) {
        return;
    }

    n = 0;

    for (node = ngx_rbtree_min(root, sentinel);
         node;
         node = ngx_rbtree_next(&rd->channels, node))
    {
        ch = (orbit_redis_channel_t *) node;

        if (ch->nsubs) {
            orbit_redis_channel_send(rd, ch, "SUBSCRIBE");
            n++;
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "redis resubscribed %ui channels", n);
}


/*
 * The subscriber context's only callback: subscribe/unsubscribe
 * confirmations and "message" pushes.  A NULL reply means the context is
 * being freed; the subscriptions stay registered for the next connection.
 */

static void
orbit_redis_message_handler(redisAsyncContext *ac, void *r, void *privdata)
{
    orbit_redis_t  *rd = privdata;

    redisReply             *reply, *kind;
    ngx_str_t               channel, payload;
    ngx_queue_t            *q, *last, *next;
    orbit_redis_sub_t      *s;
    orbit_redis_channel_t  *ch;

    reply = r;

    if (reply == NULL || rd->destroying
        || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3)
    {
        return;
    }

    kind = reply->element[0];

    if (kind->type != REDIS_REPLY_STRING
        || kind->len != sizeof("message") - 1
        || ngx_strncasecmp((u_char *) kind->str, (u_char *) "message",
                           kind->len)
           != 0
        || reply->element[1]->type != REDIS_REPLY_STRING
        || reply->element[2]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    channel.data = (u_char *) reply->element[1]->str;
    channel.len = reply->element[1]->len;
    payload.data = (u_char *) reply->element[2]->str;
    payload.len = reply->element[2]->len;

    ch = orbit_redis_channel_lookup(rd, &channel);

    if (ch == NULL || ngx_queue_empty(&ch->subs)) {
        return;
    }

    /*
     * Handlers may unsubscribe (themselves or others) and subscribe while
     * we walk: removals are deferred, and subscribers added now do not
     * get this message.
     */

    ch->delivering++;

    last = ngx_queue_last(&ch->subs);

    for (q = ngx_queue_head(&ch->subs); /* void */ ; q = next) {
        next = ngx_queue_next(q);
        s = ngx_queue_data(q, orbit_redis_sub_t, queue);

        if (s->handler) {
            s->handler(s->data, &channel, &payload);
        }

        if (q == last) {
            break;
        }
    }

    if (--ch->delivering == 0) {
        orbit_redis_channel_sweep(rd, ch);
    }
}
