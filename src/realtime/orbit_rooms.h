/*
 * OrbitDesk real time: rooms, and the fan-out of their events through
 * Redis.
 *
 * A room ("tenant:{id}", "conversation:{id}") exists in a worker while a
 * socket of that worker is in it, and only then is the worker subscribed
 * to the room's Redis channel.  An event is published once, to Redis (the
 * same path for this worker, the other workers and the other nodes), and
 * every worker delivers it to its own members.  Each event also goes to
 * the tenant's event log, a capped Redis stream whose ids are the events'
 * ids: a client that reconnects asks for what followed its last id.
 *
 * A member is told of an event once; a protocol frames it once per event
 * (orbit_rt_event_t.frames), however many of its sockets are in the room.
 */

#ifndef _ORBIT_ROOMS_H_INCLUDED_
#define _ORBIT_ROOMS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include "io/orbit_ws.h"


#define ORBIT_RT_SOCKETIO     0
#define ORBIT_RT_SIGNALR      1
#define ORBIT_RT_PROTOCOLS    2

#define ORBIT_RT_ROOM_MAX     128         /* bytes of a room's name */
#define ORBIT_RT_ROOMS_MAX    4           /* rooms of one event */
#define ORBIT_RT_ID_MAX       48          /* bytes of an event's id */


typedef struct orbit_room_s         orbit_room_t;
typedef struct orbit_room_member_s  orbit_room_member_t;


typedef struct {
    ngx_str_t                    room;
    ngx_str_t                    id;       /* in the tenant's event log */
    ngx_str_t                    name;     /* "new_message"... */
    ngx_str_t                    data;     /* JSON */
    ngx_str_t                    from;     /* the sending socket, or "" */
    ngx_str_t                    to;       /* audience: "" everyone, else
                                              "staff" and/or a user id */
    orbit_ws_frame_t            *frames[ORBIT_RT_PROTOCOLS];
} orbit_rt_event_t;


/*
 * The last event a socket was given.  An event published to several rooms
 * reaches a socket that is in more than one of them once per room, the
 * copies one right after the other (one EVAL publishes them all, and a
 * worker reads its one subscriber connection in order): the socket keeps
 * the first.
 */
typedef struct {
    size_t                       len;
    u_char                       id[ORBIT_RT_ID_MAX];
} orbit_rt_last_t;


typedef void (*orbit_room_deliver_pt)(orbit_room_member_t *m,
    orbit_rt_event_t *ev);


struct orbit_room_member_s {
    ngx_queue_t                  queue;    /* the room's members */
    orbit_room_t                *room;
    orbit_room_deliver_pt        deliver;
    void                        *data;     /* the socket */
    ngx_queue_t                  link;     /* the socket's rooms: its own */
};


/* NULL when out of memory or the name is too long */
orbit_room_member_t *orbit_room_join(ngx_str_t *room,
    orbit_room_deliver_pt deliver, void *data, ngx_log_t *log);
void orbit_room_leave(orbit_room_member_t *m);

/* the room's name of a member */
ngx_str_t *orbit_room_name(orbit_room_member_t *m);

/* a socket's membership of room, in its list of members (by ->link) */
orbit_room_member_t *orbit_room_find(ngx_queue_t *rooms, ngx_str_t *room);

/*
 * Publishes event name with JSON data to nrooms rooms (at most
 * ORBIT_RT_ROOMS_MAX) as one event, logged once in the tenant's event log.
 * from names a socket that should not hear it (or NULL); to, when not
 * NULL, limits who hears it: "staff" (admins and managers) and/or a user
 * id, space-separated — an inbox event reaches an AGENT only for the
 * conversations assigned to them.  Fire and forget: NGX_OK when Redis took
 * the command.
 */
ngx_int_t orbit_rt_broadcast(ngx_str_t *tenant, ngx_str_t *rooms,
    ngx_uint_t nrooms, ngx_str_t *to, const char *name, ngx_str_t *data,
    ngx_str_t *from, ngx_log_t *log);

#define orbit_rt_publish(tenant, room, name, data, from, log)                 \
    orbit_rt_broadcast(tenant, room, 1, NULL, name, data, from, log)

/*
 * An inbox event (new_message, message_status, message_updated): to the
 * conversation's room and the tenant's, heard by audience there ("staff"
 * when NULL or empty).
 */
ngx_int_t orbit_rt_inbox_event(ngx_str_t *tenant, ngx_str_t *conversation,
    ngx_str_t *audience, const char *name, ngx_str_t *data, ngx_log_t *log);

/* may a socket of user, of role, hear ev (its audience) */
ngx_uint_t orbit_rt_audience(ngx_str_t *to, ngx_uint_t role,
    ngx_str_t *user);

/* 1: ev is the event last given (a copy from another room); else 0, and
 * it is remembered */
ngx_uint_t orbit_rt_repeat(orbit_rt_last_t *last, orbit_rt_event_t *ev);

/*
 * May the user see conversation id, so join its room?  One statement: the
 * conversation is the tenant's, and an AGENT's only when assigned to them.
 * The check lives in a pool of its own, destroyed right after the handler
 * (which must not destroy it); destroying it earlier cancels the check.
 * rc: NGX_OK yes; NGX_DECLINED no (another tenant's, not assigned, none);
 * NGX_ERROR not checked now (logged).
 */

typedef struct orbit_rt_check_s  orbit_rt_check_t;

typedef void (*orbit_rt_checked_pt)(orbit_rt_check_t *chk, ngx_int_t rc);

struct orbit_rt_check_s {
    ngx_queue_t                  queue;    /* the owner's checks */
    ngx_pool_t                  *pool;
    ngx_str_t                    room;     /* "conversation:{id}" */
    orbit_rt_checked_pt          handler;
    void                        *data;     /* the owner */
    void                        *ctx;      /* ctx_size zeroed bytes */
};

/* NULL: not sent (no PostgreSQL, out of memory, queue full) */
orbit_rt_check_t *orbit_rt_check_conversation(const char *id,
    ngx_str_t *tenant, ngx_str_t *user, ngx_uint_t role, size_t ctx_size,
    orbit_rt_checked_pt handler, void *data, ngx_log_t *log);

/* splits a channel message "id\nfrom\nto\nname\ndata" into ev */
ngx_int_t orbit_rt_event_parse(ngx_str_t *payload, orbit_rt_event_t *ev);


#endif /* _ORBIT_ROOMS_H_INCLUDED_ */
