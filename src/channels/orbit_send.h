/*
 * OrbitDesk channels: sending a message, the one way in for every sender —
 * POST /api/v1/messages, the Socket.IO event send_message, and later the
 * flows.
 *
 * The message is stored as "queued" together with its delivery job
 * (message.send, src/channels/orbit_outbound.c) in one statement: once it
 * is stored it will be delivered, retried, or failed with the provider's
 * reason.  A private note is stored "sent" and never leaves the inbox.
 * The tenant's staff and the conversation's assignee hear new_message.
 *
 * The body (the REST one; send_message's argument is the same object):
 *   {conversationId, type?, content, replyToId?, private?}
 * content, by type (the shapes inbound messages have too):
 *   text       "Hello!" or {"text", "previewUrl"?}
 *   image, video, audio, document, sticker
 *              {"media": {"url", "mimeType"?, "filename"?}, "caption"?}
 *   template   {"template": {"name", "language", "components"?}}
 */

#ifndef _ORBIT_SEND_H_INCLUDED_
#define _ORBIT_SEND_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <jansson.h>
#include <libpq-fe.h>


#define ORBIT_SEND_PARAMS  6


/*
 * Checks body and puts it in its stored shape ("content" as an object,
 * "type" set): NULL when it may be sent, else why not (a 400's message,
 * in err).
 */
const char *orbit_send_check(json_t *body, char *err, size_t size);

/*
 * The statement's ORBIT_SEND_PARAMS parameters for a checked body, in
 * pool.  user and role: the sender (NULL for an API key).  Columns of its
 * one row: status (201, 400, 404, 409), the message, why not, the
 * audience, the event's data.
 */
extern const char  orbit_send_sql[];

ngx_int_t orbit_send_params(ngx_pool_t *pool, json_t *body,
    ngx_str_t *tenant, ngx_str_t *user, const char *role,
    const char ***values);

/* stored: new_message to the conversation's rooms (after a 201 row) */
void orbit_send_publish(PGresult *res, ngx_str_t *tenant, ngx_log_t *log);


#endif /* _ORBIT_SEND_H_INCLUDED_ */
