/*
 * OrbitDesk channels: one adapter per channel behind one interface, and
 * the pipeline every channel's inbound messages share.
 *
 * Inbound:  provider webhook -> the adapter checks its signature on the
 *           raw bytes, before any parsing -> the adapter normalizes the
 *           payload into the pipeline's items -> the pipeline stores them
 *           all in one SQL call (orbit_inbound(), 006_inbox.sql), answers
 *           200 once they are committed, and publishes new_message and
 *           message_status to the real-time rooms.
 *
 * An item is JSON (the contract with orbit_inbound()):
 *   {"kind":"message", "channel":"whatsapp", "account":"<the provider's id
 *    of our account: what connections are routed by>", "contact":
 *    {"externalId", "phone"?, "name"?}, "providerMessageId", "type",
 *    "content":{...}, "replyTo"?, "timestamp"?}
 *   {"kind":"status", "channel", "account", "providerMessageId",
 *    "status":"sent|delivered|read|failed", "timestamp"?, "error"?}
 *   {"kind":"status", "channel", "account", "contact":{"externalId"},
 *    "watermark":<epoch ms>, "status":"delivered|read", "timestamp"?}
 *    a watermark (Messenger's, Instagram's): every outbound message of
 *    the contact's conversation on that account that the provider took
 *    (sent, or delivered for read) and that was created at or before the
 *    watermark moves to the status (010_meta.sql)
 *
 * Adding a channel: one file with its orbit_channel_t, one line in the
 * table of orbit_channels.c.  Its webhook is then served at
 * /api/v1/channels/{name}/webhook (GET and POST), without any other
 * change to the pipeline, the inbox or the flows.
 */

#ifndef _ORBIT_CHANNEL_H_INCLUDED_
#define _ORBIT_CHANNEL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <jansson.h>

#include "api/orbit_api.h"
#include "io/orbit_http_client.h"
#include "jobs/orbit_jobs.h"


typedef struct orbit_channel_s  orbit_channel_t;


/* one inbound webhook, as the adapter sees it */
typedef struct {
    orbit_api_req_t             *ar;
    const orbit_channel_t       *channel;
    ngx_str_t                    body;         /* raw, nul-terminated */
    json_t                      *items;        /* normalize appends */
    const char                  *error;        /* why it was refused */

    /* ORBIT_CHANNEL_KEYED: the account named by the webhook's path */
    const char                  *account;
    json_t                      *credentials;  /* opened */

    /* the 200's own body and type, set by verify or normalize for a
     * provider that wants its own answer (Twilio's TwiML); no type: the
     * pipeline's JSON counts.  Errors are JSON whatever the channel. */
    ngx_str_t                    reply;
    ngx_str_t                    reply_type;
} orbit_channel_in_t;


/*
 * The account is in the webhook's path (/channels/{name}/{account}/
 * webhook), and its own credentials verify the request: the pipeline
 * loads them before verify.
 */
#define ORBIT_CHANNEL_KEYED   0x0001

/*
 * New messages are fetched, not pushed (IMAP): every active connection
 * has one channel.poll job, which channel.setup enqueues once the
 * connection is set up.
 */
#define ORBIT_CHANNEL_POLLED  0x0002

/*
 * The provider sends media as URLs anyone may fetch for a while (a CDN's):
 * the media.fetch job downloads them without a media hook.
 */
#define ORBIT_CHANNEL_MEDIA_URL  0x0004


/*
 * One outbound message, as its delivery job hands it to the adapter: the
 * adapter builds the provider's request (send), then reads the answer
 * (sent).
 */
typedef struct {
    ngx_pool_t                  *pool;         /* the delivery's */
    ngx_log_t                   *log;
    json_t                      *message;      /* orbit_message_json() */
    json_t                      *config;       /* the connection's */
    json_t                      *credentials;  /* decrypted */
    ngx_str_t                    tenant;
    const char                  *account;      /* the connection's id */
    const char                  *to;           /* the contact, channel's id */
    const char                  *to_phone;     /* E.164, or NULL */
    const char                  *reply_to;     /* provider's id, or NULL */
    json_t                      *thread;       /* the message replied to,
                                                  else the conversation's
                                                  newest inbound one
                                                  (orbit_message_json()),
                                                  or NULL */
    orbit_http_req_t            *req;          /* send fills it */

    /* sent's reading */
    ngx_str_t                    provider_id;
    ngx_str_t                    error;        /* {"code","title",...} */
    ngx_msec_t                   retry_after;  /* 0: the queue's backoff */
} orbit_channel_out_t;


typedef enum {
    ORBIT_SEND_DONE = 0,         /* the provider took it */
    ORBIT_SEND_RETRY,            /* later: 5xx, 429, no answer */
    ORBIT_SEND_FAIL              /* never: the provider said why */
} orbit_send_rc_e;


struct orbit_channel_s {
    const char                  *name;         /* in the webhook's path */
    const char                  *channel;      /* conversations' channel */

    /*
     * The provider's verification GET (Meta's hub.challenge), or NULL: the
     * answer's body in *reply and NGX_OK, or an HTTP status with
     * in->error.
     */
    ngx_int_t                  (*challenge)(orbit_channel_in_t *in,
                                            ngx_str_t *reply);

    /*
     * Is the request the provider's: NGX_OK, or an HTTP status (403 for a
     * bad signature, 503 when the channel is not configured) with
     * in->error.  Runs on the raw body, before anything parses it.
     */
    ngx_int_t                  (*verify)(orbit_channel_in_t *in);

    /*
     * The payload as items: NGX_OK (perhaps none: a change of no
     * interest), or NGX_HTTP_BAD_REQUEST with in->error.  Nothing is
     * stored unless every part of the payload was understood.
     */
    ngx_int_t                  (*normalize)(orbit_channel_in_t *in);

    /*
     * Outbound.  send: the provider's request for out->message in
     * out->req; NGX_OK, NGX_DONE when delivered without one (live chat
     * pushes to the visitor's socket), or NGX_DECLINED with out->error
     * when the message cannot go on this channel at all.  sent: what
     * the answer in out->req means.  mark_read: a read receipt's request
     * for the provider's message id, or NULL when the channel has none.
     */
    ngx_int_t                  (*send)(orbit_channel_out_t *out);
    orbit_send_rc_e            (*sent)(orbit_channel_out_t *out);
    ngx_int_t                  (*mark_read)(orbit_channel_out_t *out,
                                            const char *provider_id);

    /*
     * A connection created or changed (credentials, config, status,
     * account): the request that registers us with the provider
     * (Telegram's setWebhook, built on ngx_http_orbit_public_url()) in
     * out->req and NGX_OK, NGX_DONE when there is nothing to send, or
     * NGX_DECLINED with out->error when the connection cannot work.
     * connected reads the answer.  Run by the channel.setup job; the
     * outcome is the connection's "setup" ({status: pending, ok, failed,
     * error}).  out->message is NULL there.
     */
    ngx_int_t                  (*connect)(orbit_channel_out_t *out);
    orbit_send_rc_e            (*connected)(orbit_channel_out_t *out);

    /*
     * Inbound media the provider keeps: an item's content.media with a
     * "provider" key (WhatsApp's {provider, id}, Telegram's file_id) is
     * fetched by a media.fetch job and stored (local disk or S3); the
     * message's content.media then gets our "url" and "mediaId".  media
     * builds, for that object, the request that locates the bytes in
     * out->req and NGX_OK, or the download itself and NGX_DONE, or
     * NGX_DECLINED with out->error; media_located reads the locating
     * answer and fills out->req (a fresh orbit_http_req_create()) with the
     * download (URL and headers: the connection's token): NGX_OK, or
     * NGX_DECLINED / NGX_ERROR (retried).  out->message is the message.
     */
    ngx_int_t                  (*media)(orbit_channel_out_t *out,
                                        json_t *media);
    ngx_int_t                  (*media_located)(orbit_channel_out_t *out);

    ngx_uint_t                   flags;        /* ORBIT_CHANNEL_* */

    /*
     * An agent types (on) or stopped (off) in a conversation: the
     * provider's request for the indicator to out->to, or NULL when the
     * channel shows none.  Sent by a message.typing job, once, never
     * retried.
     */
    ngx_int_t                  (*typing)(orbit_channel_out_t *out,
                                         ngx_uint_t on);
};


extern const orbit_channel_t  orbit_channel_whatsapp;
extern const orbit_channel_t  orbit_channel_livechat;
extern const orbit_channel_t  orbit_channel_api;
extern const orbit_channel_t  orbit_channel_messenger;
extern const orbit_channel_t  orbit_channel_instagram;
extern const orbit_channel_t  orbit_channel_telegram;
extern const orbit_channel_t  orbit_channel_twilio;
extern const orbit_channel_t  orbit_channel_email;


/* the adapter served at /api/v1/channels/{name}/webhook, or NULL */
const orbit_channel_t *orbit_channel_find(u_char *name, size_t len);

/* the adapter that sends a conversation's channel ("livechat"), or NULL */
const orbit_channel_t *orbit_channel_for(const char *channel);

/* a new item of kind ("message", "status") for the conversation channel
 * and account, appended to in->items; NULL when out of memory */
json_t *orbit_channel_item(orbit_channel_in_t *in, const char *kind,
    const char *channel, const char *account);


/* the base URL of the provider's API (orbit_channel_api), or fallback */
ngx_str_t *ngx_http_orbit_channel_api_url(const char *name,
    ngx_str_t *fallback);

/* how the outside reaches us (orbit_public_url), or NULL when not set */
ngx_str_t *ngx_http_orbit_public_url(void);

/*
 * X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>, the
 * signature of Meta's webhooks and of the API channel: NGX_OK, or 403
 * with in->error.
 */
ngx_int_t orbit_channel_hub_signature(orbit_channel_in_t *in,
    const char *secret);

/* the Meta app's secret (META_APP_SECRET) or verify token
 * (META_VERIFY_TOKEN); NULL, logged, with in->error when not set */
const char *orbit_channel_meta_secret(orbit_channel_in_t *in,
    ngx_uint_t verify_token);

/* Meta's verification GET under META_VERIFY_TOKEN: a challenge hook */
ngx_int_t orbit_channel_hub_challenge(orbit_channel_in_t *in,
    ngx_str_t *reply);

/* a Graph API answer that is not a success, read for a sent hook: the
 * reason in out->error; RETRY when throttled, 5xx or unanswered */
orbit_send_rc_e orbit_channel_graph_error(orbit_channel_out_t *out,
    json_t *res, const char *provider);

/* the same signature of body, for a request we send: "sha256=..." */
ngx_int_t orbit_channel_sign(orbit_channel_out_t *out, const char *secret,
    ngx_str_t *body, char **header);

/* the JSON a job parsed into out (message, config, credentials, thread)
 * released, before the job's pool may go */
void orbit_channel_out_release(orbit_channel_out_t *out);

/* ... and released when pool goes, whatever cut the job's run short */
ngx_int_t orbit_channel_out_guard(orbit_channel_out_t *out,
    ngx_pool_t *pool);

/* X-Hub-Signature-256 under META_APP_SECRET: Meta's channels' verify */
ngx_int_t orbit_channel_meta_verify(orbit_channel_in_t *in);

/* an error {"code": code, "title": title} in out->error */
void orbit_channel_error(orbit_channel_out_t *out, ngx_int_t code,
    const char *title);

/* the provider's id of the message sent, copied to out->pool */
ngx_int_t orbit_channel_provider_id(orbit_channel_out_t *out,
    const char *id);

/* body (a reference it takes) as out->req's body, in out->pool */
ngx_int_t orbit_channel_body(orbit_channel_out_t *out, json_t *body);

/* adds "Name: value" to out->req */
ngx_int_t orbit_channel_header(orbit_channel_out_t *out, const char *name,
    const char *value);

/* REST handlers: the webhooks */
ngx_int_t orbit_channel_webhook(orbit_api_req_t *ar);
ngx_int_t orbit_channel_whatsapp_webhook(orbit_api_req_t *ar);

/* the live-chat widget's: a visitor's session, messages in and out */
ngx_int_t orbit_livechat_session(orbit_api_req_t *ar);
ngx_int_t orbit_livechat_message(orbit_api_req_t *ar);
ngx_int_t orbit_livechat_messages(orbit_api_req_t *ar);

/* the delivery jobs (src/jobs): message.send, message.read,
 * message.typing and channel.setup */
ngx_int_t orbit_outbound_send_job(orbit_job_t *job);
ngx_int_t orbit_outbound_read_job(orbit_job_t *job);
ngx_int_t orbit_outbound_typing_job(orbit_job_t *job);
ngx_int_t orbit_outbound_setup_job(orbit_job_t *job);

/* media.fetch: an inbound message's media, stored (009_media.sql) */
ngx_int_t orbit_media_fetch_job(orbit_job_t *job);

/* an agent's typing in a conversation of the tenant: a message.typing job
 * when its channel has the typing hook (one statement, not waited for) */
void orbit_outbound_typing(ngx_str_t *tenant, const char *conversation,
    ngx_uint_t on);

/* "{messenger,instagram}": the channels with a typing hook */
const char *orbit_channel_typing_channels(void);

/* the pipeline's way in, for an adapter's own route */
ngx_int_t orbit_pipeline_start(orbit_api_req_t *ar,
    const orbit_channel_t *ch);

/*
 * The pipeline's way in for a job (a polled channel): items stored by
 * one statement, sql (NULL: SELECT orbit_inbound($1)) of the items as $1
 * and values as $2..: a function that commits the job's own change (its
 * cursor) with the items and returns orbit_inbound()'s answer.  The
 * stored messages and statuses are published as the webhooks' are, then
 * handler runs: rc NGX_OK once committed, NGX_ERROR when not.
 * orbit_pipeline_store() returns NGX_ERROR when it could not send the
 * statement (and the handler is not called).
 */
typedef struct orbit_pipeline_store_s  orbit_pipeline_store_t;

struct orbit_pipeline_store_s {
    ngx_pool_t                  *pool;         /* lives until handler */
    ngx_log_t                   *log;
    json_t                      *items;        /* not taken */
    const char                  *sql;
    int                          nparams;
    const char                 **values;
    void                       (*handler)(orbit_pipeline_store_t *ps);
    void                        *data;

    ngx_int_t                    rc;
    ngx_uint_t                   stored;
    ngx_uint_t                   duplicates;
    ngx_uint_t                   unknown;
};

ngx_int_t orbit_pipeline_store(orbit_pipeline_store_t *ps);

/* the channel.poll job of the email channel (the only one that polls) */
ngx_int_t orbit_email_poll_job(orbit_job_t *job);


#endif /* _ORBIT_CHANNEL_H_INCLUDED_ */
