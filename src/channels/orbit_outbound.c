/*
 * OrbitDesk channels: outbound delivery, the jobs that send.
 *
 *   message.send  {messageId, messageCreatedAt, conversationId,
 *                  connectionId, channel}    enqueued with the message
 *   message.read  {conversationId, connectionId, messageId,
 *                  providerMessageId}        enqueued by "mark read"
 *   message.typing {conversationId, connectionId, on}
 *                  an agent types (the inbox socket), on channels with
 *                  the typing hook; once, never retried
 *   channel.setup {connectionId}             enqueued when a connection
 *                                            is created or changed (008)
 *
 * A run: load the message and its connection (one statement) -> open the
 * connection's credentials -> the channel's adapter builds the provider's
 * request -> orbit_http_client sends it -> the adapter reads the answer ->
 * the job ends, its effect on the message committed with its outcome
 * (src/jobs): sent with the provider's id, failed for good with the
 * provider's reason, or retried with backoff (5xx, 429, no answer).  A
 * message that is no longer queued when its job runs (a run that died
 * after its commit) is not sent again.  Then message_status goes to the
 * conversation's rooms.  channel.setup runs the adapter's connect the
 * same way, its outcome the connection's "setup".
 *
 * What remains: a worker killed after the provider accepted a message
 * and before the outcome committed leaves the job to run again, and the
 * provider gets the message twice; WhatsApp has no idempotency key to
 * prevent it (our id rides along as biz_opaque_callback_data).
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"
#include "channels/orbit_channel_creds.h"
#include "realtime/orbit_rooms.h"
#include "jobs/orbit_jobs.h"


#define ORBIT_OUT_HTTP_TIMEOUT  30000
#define ORBIT_OUT_MEDIA_TTL     86400      /* an upload's link, seconds */


typedef enum {
    ORBIT_OUT_SEND = 0,
    ORBIT_OUT_READ,
    ORBIT_OUT_TYPING,
    ORBIT_OUT_SETUP
} orbit_outbound_e;


typedef struct {
    orbit_job_t                 *job;
    const orbit_channel_t       *ch;
    orbit_channel_out_t          out;
    orbit_outbound_e             what;
    unsigned                     on:1;         /* typing's */
    unsigned                     recorded:1;   /* the send's commit tried */
    const char                  *status;       /* the message's, then */
    const char                  *message_id;
    const char                  *created_at;
    const char                  *receipt_of;   /* message.read's */
    const char                  *connection;
    ngx_str_t                    conversation;
    ngx_str_t                    audience;     /* staff and the assignee */
} orbit_outbound_t;


/* the load's columns */
enum {
    ORBIT_OUT_STATUS = 0,
    ORBIT_OUT_MESSAGE,
    ORBIT_OUT_CHANNEL,
    ORBIT_OUT_ACCOUNT,
    ORBIT_OUT_CONFIG,
    ORBIT_OUT_CREDENTIALS,
    ORBIT_OUT_CONN_STATUS,
    ORBIT_OUT_TENANT,
    ORBIT_OUT_CONN_ID,
    ORBIT_OUT_TO,
    ORBIT_OUT_PHONE,
    ORBIT_OUT_REPLY_TO,
    ORBIT_OUT_CONVERSATION,
    ORBIT_OUT_AUDIENCE,
    ORBIT_OUT_THREAD
};


static ngx_int_t orbit_outbound_start(orbit_job_t *job,
    orbit_outbound_e what);
static void orbit_outbound_typing_queued(orbit_pg_query_t *q,
    PGresult *res);
static void orbit_outbound_loaded(orbit_pg_query_t *q, PGresult *res);
static ngx_int_t orbit_outbound_prepare(orbit_outbound_t *ob, PGresult *res);
static void orbit_outbound_answered(orbit_http_req_t *req);
static void orbit_outbound_done(orbit_outbound_t *ob, orbit_send_rc_e rc);
static ngx_int_t orbit_outbound_record(orbit_outbound_t *ob,
    const char **v);
static void orbit_outbound_recorded(orbit_pg_query_t *q, PGresult *res);
static void orbit_outbound_finish_sent(orbit_outbound_t *ob);
static void orbit_outbound_publish(orbit_outbound_t *ob, const char *status);
static ngx_int_t orbit_outbound_media_link(orbit_outbound_t *ob);
static void orbit_outbound_fail(orbit_job_t *job, const char *why);


/* the effects, committed with the outcome (src/jobs: the CTE "job") */

static const char  orbit_outbound_sent_sql[] =
    "SELECT orbit_message_sent($1::uuid, $2::timestamptz, $3, $4::uuid)";

static const char  orbit_outbound_failed_sql[] =
    "SELECT orbit_message_failed($1::uuid, $2::timestamptz, $3::jsonb)"
    " FROM job WHERE job.status = 'failed'";

static const char  orbit_outbound_setup_sql[] =
    "SELECT orbit_channel_setup_done($1::uuid, job.status = 'done',"
    "  $2::jsonb, $3::boolean)"
    " FROM job WHERE job.status IN ('done', 'failed')";


ngx_int_t
orbit_outbound_send_job(orbit_job_t *job)
{
    return orbit_outbound_start(job, ORBIT_OUT_SEND);
}


ngx_int_t
orbit_outbound_read_job(orbit_job_t *job)
{
    return orbit_outbound_start(job, ORBIT_OUT_READ);
}


ngx_int_t
orbit_outbound_typing_job(orbit_job_t *job)
{
    return orbit_outbound_start(job, ORBIT_OUT_TYPING);
}


ngx_int_t
orbit_outbound_setup_job(orbit_job_t *job)
{
    return orbit_outbound_start(job, ORBIT_OUT_SETUP);
}


/*
 * One statement, not waited for: the job only when the conversation's
 * channel shows typing.  Best effort: an indicator lost is no harm.
 */

void
orbit_outbound_typing(ngx_str_t *tenant, const char *conversation,
    ngx_uint_t on)
{
    const char        **v, *channels;
    ngx_pool_t         *pool;
    orbit_pg_pool_t    *pg;
    orbit_pg_query_t   *q;

    static const char  sql[] =
        "INSERT INTO jobs (tenant_id, kind, payload, max_attempts)"
        " SELECT c.tenant_id, 'message.typing', jsonb_build_object("
        "   'conversationId', c.id, 'connectionId', c.connection_id,"
        "   'on', $3::boolean), 1"
        " FROM conversations c"
        " WHERE c.id = $2::uuid AND c.tenant_id = $1::uuid"
        "   AND c.connection_id IS NOT NULL"
        "   AND c.channel = ANY ($4::text[])";

    channels = orbit_channel_typing_channels();
    pg = ngx_http_orbit_pg();

    if (ngx_strcmp(channels, "{}") == 0 || pg == NULL) {
        return;
    }

    /* the socket may go before the answer: the cycle's log */
    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    v = ngx_palloc(pool, 4 * sizeof(char *));
    q = orbit_pg_query_create(pool);

    if (v == NULL || q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    v[0] = orbit_api_strdup_n(pool, tenant->data, tenant->len);
    v[1] = orbit_api_strdup(pool, conversation);
    v[2] = on ? "true" : "false";
    v[3] = channels;

    q->sql = sql;
    q->nparams = 4;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_outbound_typing_queued;
    q->data = pool;

    if (v[0] == NULL || v[1] == NULL
        || orbit_pg_query_send(pg, q) != NGX_OK)
    {
        ngx_destroy_pool(pool);
    }
}


static void
orbit_outbound_typing_queued(orbit_pg_query_t *q, PGresult *res)
{
    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "typing: the indicator could not be queued");
    }

    ngx_destroy_pool(q->data);
}


static ngx_int_t
orbit_outbound_start(orbit_job_t *job, orbit_outbound_e what)
{
    const char        **v;
    orbit_pg_pool_t    *pg;
    orbit_pg_query_t   *q;
    orbit_outbound_t   *ob;

    static const char  message_sql[] =
        "SELECT m.status, orbit_message_json(m), cn.channel, cn.account_id,"
        "  cn.config, cn.credentials, cn.status, cn.tenant_id, cn.id,"
        "  (SELECT ci.external_id FROM contact_identities ci"
        "   WHERE ci.contact_id = c.contact_id AND ci.tenant_id = c.tenant_id"
        "     AND ci.channel = cn.channel"
        "   ORDER BY ci.created_at LIMIT 1),"
        "  k.phone,"
        "  (SELECT r.provider_message_id FROM messages r"
        "   WHERE r.id = m.reply_to_id AND r.tenant_id = m.tenant_id"
        "   LIMIT 1),"
        "  c.id, trim('staff ' || COALESCE(c.assignee_id::text, '')),"
        "  COALESCE((SELECT orbit_message_json(r) FROM messages r"
        "            WHERE r.id = m.reply_to_id AND r.tenant_id = m.tenant_id"
        "            LIMIT 1),"
        "           (SELECT orbit_message_json(r) FROM messages r"
        "            WHERE r.conversation_id = m.conversation_id"
        "              AND r.direction = 'inbound'"
        "            ORDER BY r.created_at DESC, r.id DESC LIMIT 1))"
        " FROM messages m"
        " JOIN conversations c ON c.id = m.conversation_id"
        " JOIN contacts k ON k.id = c.contact_id"
        " LEFT JOIN channel_connections cn ON cn.id = c.connection_id"
        " WHERE m.id = $1::uuid AND m.created_at = $2::timestamptz"
        "   AND m.tenant_id = $3::uuid";

    /* a receipt goes to the contact (Messenger's mark_seen) */
    static const char  connection_sql[] =
        "SELECT 'queued', NULL, cn.channel, cn.account_id, cn.config,"
        "  cn.credentials, cn.status, cn.tenant_id, cn.id,"
        "  (SELECT ci.external_id FROM conversations c"
        "   JOIN contact_identities ci ON ci.contact_id = c.contact_id"
        "    AND ci.tenant_id = c.tenant_id AND ci.channel = cn.channel"
        "   WHERE c.id = $2::uuid AND c.tenant_id = cn.tenant_id"
        "   ORDER BY ci.created_at LIMIT 1),"
        "  NULL, NULL, $2::uuid, 'staff', NULL"
        " FROM channel_connections cn"
        " WHERE cn.id = $1::uuid AND cn.tenant_id = $3::uuid";

    ob = ngx_pcalloc(job->pool, sizeof(orbit_outbound_t));
    v = ngx_pcalloc(job->pool, 3 * sizeof(char *));
    if (ob == NULL || v == NULL) {
        return NGX_ERROR;
    }

    ob->job = job;
    ob->what = what;
    ob->out.pool = job->pool;
    ob->out.log = job->log;

    if (orbit_channel_out_guard(&ob->out, job->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    if (what == ORBIT_OUT_READ) {
        v[0] = json_string_value(json_object_get(job->json, "connectionId"));
        v[1] = json_string_value(json_object_get(job->json,
                                                 "conversationId"));
        ob->receipt_of = json_string_value(json_object_get(job->json,
                                               "providerMessageId"));

    } else if (what == ORBIT_OUT_TYPING) {
        ob->on = json_is_true(json_object_get(job->json, "on"));
        v[0] = json_string_value(json_object_get(job->json, "connectionId"));
        v[1] = json_string_value(json_object_get(job->json,
                                                 "conversationId"));

    } else if (what == ORBIT_OUT_SETUP) {
        v[0] = json_string_value(json_object_get(job->json, "connectionId"));
        v[1] = v[0];            /* not a conversation: never NULL */

    } else {
        v[0] = json_string_value(json_object_get(job->json, "messageId"));
        v[1] = json_string_value(json_object_get(job->json,
                                                 "messageCreatedAt"));
    }

    v[2] = job->tenant_id.len
           ? orbit_api_strdup_n(job->pool, job->tenant_id.data,
                                job->tenant_id.len)
           : NULL;

    if (v[0] == NULL || v[1] == NULL || v[2] == NULL
        || (what == ORBIT_OUT_READ && ob->receipt_of == NULL))
    {
        orbit_outbound_fail(job, "the job's payload is incomplete");
        return NGX_OK;
    }

    ob->message_id = v[0];
    ob->created_at = v[1];

    pg = ngx_http_orbit_pg();
    q = orbit_pg_query_create(job->pool);

    if (pg == NULL || q == NULL) {
        return NGX_ERROR;
    }

    q->sql = (what == ORBIT_OUT_SEND) ? message_sql : connection_sql;
    q->nparams = 3;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_outbound_loaded;
    q->data = ob;

    if (orbit_pg_query_send(pg, q) != NGX_OK) {
        return NGX_ERROR;       /* PostgreSQL away: tried again later */
    }

    return NGX_OK;
}


static void
orbit_outbound_loaded(orbit_pg_query_t *q, PGresult *res)
{
    orbit_outbound_t  *ob = q->data;

    ngx_int_t             rc;
    orbit_job_outcome_t   done;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_memzero(&done, sizeof(orbit_job_outcome_t));
        done.status = ORBIT_JOB_RETRY;
        ngx_str_set(&done.error, "the message could not be loaded");
        orbit_job_finish(ob->job, &done);
        return;
    }

    if (PQntuples(res) != 1) {
        orbit_outbound_fail(ob->job, (ob->what == ORBIT_OUT_SEND)
                                     ? "the message is gone"
                                     : "the connection is gone");
        return;
    }

    if (ngx_strcmp(PQgetvalue(res, 0, ORBIT_OUT_STATUS), "queued") != 0) {
        /* sent by a run that died after its commit: not again */
        ngx_memzero(&done, sizeof(orbit_job_outcome_t));
        done.status = ORBIT_JOB_DONE;
        orbit_job_finish(ob->job, &done);
        return;
    }

    rc = orbit_outbound_prepare(ob, res);

    if (rc == NGX_DONE) {
        orbit_outbound_done(ob, ORBIT_SEND_DONE);
        return;
    }

    if (rc == NGX_DECLINED) {
        orbit_outbound_done(ob, ORBIT_SEND_FAIL);
        return;
    }

    if (rc != NGX_OK
        || orbit_http_send(ngx_http_orbit_http_client(), ob->out.req)
           != NGX_OK)
    {
        orbit_outbound_done(ob, ORBIT_SEND_RETRY);
    }
}


/*
 * The adapter's request for the message (or the receipt): NGX_OK to send
 * it, NGX_DONE when delivered already, NGX_DECLINED when it cannot be
 * (out.error says why), NGX_ERROR to try again later.
 */

static ngx_int_t
orbit_outbound_prepare(orbit_outbound_t *ob, PGresult *res)
{
    char                 *message, *config, *thread;
    ngx_int_t             rc;
    ngx_str_t             tenant, conn;
    ngx_pool_t           *pool;
    json_error_t          err;
    orbit_channel_out_t  *out;

    out = &ob->out;
    pool = ob->job->pool;

    if (ob->what == ORBIT_OUT_SETUP) {
        ob->connection = orbit_pg_value(pool, res, 0, ORBIT_OUT_CONN_ID);
        ob->ch = orbit_channel_for(PQgetvalue(res, 0, ORBIT_OUT_CHANNEL));

        if (ob->ch == NULL || ob->ch->connect == NULL
            || ngx_strcmp(PQgetvalue(res, 0, ORBIT_OUT_CONN_STATUS),
                          "active") != 0)
        {
            return NGX_DONE;    /* nothing to register */
        }
    }

    if (PQgetisnull(res, 0, ORBIT_OUT_CHANNEL)
        || ngx_strcmp(PQgetvalue(res, 0, ORBIT_OUT_CONN_STATUS), "active")
           != 0)
    {
        orbit_channel_error(out, 409, "The channel is not connected any "
                                      "more");
        return NGX_DECLINED;
    }

    ob->ch = orbit_channel_for(PQgetvalue(res, 0, ORBIT_OUT_CHANNEL));

    if (ob->ch == NULL || ob->ch->send == NULL) {
        orbit_channel_error(out, 501, "This channel cannot send yet");
        return NGX_DECLINED;
    }

    tenant.data = (u_char *) orbit_pg_value(pool, res, 0, ORBIT_OUT_TENANT);
    conn.data = (u_char *) orbit_pg_value(pool, res, 0, ORBIT_OUT_CONN_ID);
    out->account = orbit_pg_value(pool, res, 0, ORBIT_OUT_ACCOUNT);
    out->to = orbit_pg_value(pool, res, 0, ORBIT_OUT_TO);
    out->to_phone = orbit_pg_value(pool, res, 0, ORBIT_OUT_PHONE);
    out->reply_to = orbit_pg_value(pool, res, 0, ORBIT_OUT_REPLY_TO);
    ob->connection = (char *) conn.data;
    ob->conversation.data = (u_char *) orbit_pg_value(pool, res, 0,
                                                      ORBIT_OUT_CONVERSATION);
    ob->audience.data = (u_char *) orbit_pg_value(pool, res, 0,
                                                  ORBIT_OUT_AUDIENCE);
    ob->audience.len = ob->audience.data ? ngx_strlen(ob->audience.data)
                                         : 0;
    message = orbit_pg_value(pool, res, 0, ORBIT_OUT_MESSAGE);
    config = orbit_pg_value(pool, res, 0, ORBIT_OUT_CONFIG);
    thread = orbit_pg_value(pool, res, 0, ORBIT_OUT_THREAD);

    if (tenant.data == NULL || conn.data == NULL || out->account == NULL) {
        return NGX_ERROR;
    }

    tenant.len = ngx_strlen(tenant.data);
    conn.len = ngx_strlen(conn.data);
    out->tenant = tenant;
    ob->conversation.len = ob->conversation.data
                           ? ngx_strlen(ob->conversation.data) : 0;

    out->message = message ? json_loads(message, 0, &err) : json_object();
    out->config = config ? json_loads(config, 0, &err) : json_object();
    out->thread = thread ? json_loads(thread, 0, &err) : NULL;
    out->credentials = orbit_channel_creds_open(ob->job->log,
                           (u_char *) PQgetvalue(res, 0,
                                                 ORBIT_OUT_CREDENTIALS),
                           PQgetlength(res, 0, ORBIT_OUT_CREDENTIALS),
                           &tenant, &conn);

    if (out->message == NULL || out->config == NULL) {
        return NGX_ERROR;
    }

    if (out->credentials == NULL) {
        orbit_channel_error(out, 401, "The connection's credentials do not "
                                      "open: enter them again");
        return NGX_DECLINED;
    }

    out->req = orbit_http_req_create(ob->job->pool);
    if (out->req == NULL) {
        return NGX_ERROR;
    }

    out->req->timeout = ORBIT_OUT_HTTP_TIMEOUT;
    out->req->handler = orbit_outbound_answered;
    out->req->data = ob;

    switch (ob->what) {

    case ORBIT_OUT_READ:
        if (ob->ch->mark_read == NULL) {
            return NGX_DONE;    /* the channel has no read receipts */
        }

        return ob->ch->mark_read(out, ob->receipt_of);

    case ORBIT_OUT_TYPING:
        if (ob->ch->typing == NULL) {
            return NGX_DONE;    /* the channel shows no typing */
        }

        return ob->ch->typing(out, ob->on);

    case ORBIT_OUT_SETUP:
        return ob->ch->connect(out);

    default: /* ORBIT_OUT_SEND */
        rc = orbit_outbound_media_link(ob);
        if (rc != NGX_OK) {
            return rc;
        }

        return ob->ch->send(out);
    }
}


/*
 * An upload (content.media.mediaId) goes to the provider as a link it can
 * fetch for a day: content.media.url in the message the adapter reads.
 */

static ngx_int_t
orbit_outbound_media_link(orbit_outbound_t *ob)
{
    char        *link;
    json_t      *media;
    ngx_int_t    rc;
    ngx_str_t    url;
    const char  *id;

    media = json_object_get(json_object_get(ob->out.message, "content"),
                            "media");
    id = json_string_value(json_object_get(media, "mediaId"));

    if (id == NULL) {
        return NGX_OK;
    }

    rc = orbit_media_link(ob->job->pool, &ob->out.tenant, id,
                          ORBIT_OUT_MEDIA_TTL, &url);

    if (rc == NGX_DECLINED) {
        orbit_channel_error(&ob->out, 503, "The provider cannot fetch an "
                            "upload: no orbit_public_url (or orbit_media)");
        return NGX_DECLINED;
    }

    link = (rc == NGX_OK) ? orbit_api_strdup_n(ob->job->pool, url.data,
                                               url.len)
                          : NULL;

    if (link == NULL
        || json_object_set_new(media, "url", json_string(link)) != 0)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
orbit_outbound_answered(orbit_http_req_t *req)
{
    orbit_outbound_t  *ob = req->data;

    orbit_send_rc_e  rc;

    rc = (ob->what == ORBIT_OUT_SETUP) ? ob->ch->connected(&ob->out)
                                       : ob->ch->sent(&ob->out);

    if (rc != ORBIT_SEND_DONE) {
        ngx_log_error(NGX_LOG_WARN, ob->job->log, 0,
                      "%s: %s answered %ui %V", ob->ch->name,
                      rc == ORBIT_SEND_RETRY ? "retried" : "failed",
                      req->status, req->status ? &ob->out.error
                                               : &req->error);
    }

    orbit_outbound_done(ob, rc);
}


/* the job's outcome, and the message's with it */

static void
orbit_outbound_done(orbit_outbound_t *ob, orbit_send_rc_e rc)
{
    const char           **v;
    orbit_channel_out_t   *out;
    orbit_job_outcome_t    done;

    out = &ob->out;
    ngx_memzero(&done, sizeof(orbit_job_outcome_t));

    v = ngx_pcalloc(ob->job->pool, 4 * sizeof(char *));
    if (v == NULL) {
        done.status = ORBIT_JOB_RETRY;
        orbit_job_finish(ob->job, &done);
        return;
    }

    if (out->error.len == 0 && rc != ORBIT_SEND_DONE) {
        orbit_channel_error(out, out->req ? (ngx_int_t) out->req->status : 0,
                            "The provider did not take it");
    }

    done.error = out->error;

    if (ob->what == ORBIT_OUT_SETUP) {
        v[0] = ob->connection;
        v[1] = out->error.len ? orbit_api_strdup_n(ob->job->pool,
                                                   out->error.data,
                                                   out->error.len)
                              : NULL;
        v[2] = (ob->ch && (ob->ch->flags & ORBIT_CHANNEL_POLLED))
               ? "true" : "false";

        done.status = (rc == ORBIT_SEND_DONE) ? ORBIT_JOB_DONE
                      : (rc == ORBIT_SEND_FAIL) ? ORBIT_JOB_FAIL
                      : ORBIT_JOB_RETRY;
        done.delay = out->retry_after;

        if (ob->connection) {
            done.effect = orbit_outbound_setup_sql;
            done.nparams = 3;
            done.values = v;
        }

    } else if (rc == ORBIT_SEND_DONE) {
        done.status = ORBIT_JOB_DONE;

        if (ob->what == ORBIT_OUT_SEND) {
            v[0] = ob->message_id;
            v[1] = ob->created_at;
            v[2] = out->provider_id.len
                   ? orbit_api_strdup_n(ob->job->pool, out->provider_id.data,
                                        out->provider_id.len)
                   : NULL;
            v[3] = ob->connection;

            /* committed first, so the event says what the message is */

            if (!ob->recorded && orbit_outbound_record(ob, v) == NGX_OK) {
                return;
            }

            done.effect = orbit_outbound_sent_sql;
            done.nparams = 4;
            done.values = v;
        }

    } else {
        /* failed for good, or later; failed too if it was the last try */

        done.status = (rc == ORBIT_SEND_FAIL) ? ORBIT_JOB_FAIL
                                               : ORBIT_JOB_RETRY;
        done.delay = out->retry_after;

        if (ob->what == ORBIT_OUT_SEND) {
            v[0] = ob->message_id;
            v[1] = ob->created_at;
            v[2] = orbit_api_strdup_n(ob->job->pool, out->error.data,
                                      out->error.len);

            done.effect = orbit_outbound_failed_sql;
            done.nparams = 3;
            done.values = v;
        }
    }

    /* the last use of the run's pool: finishing may destroy it */

    if (ob->what == ORBIT_OUT_SEND) {
        if (rc == ORBIT_SEND_DONE) {
            orbit_outbound_publish(ob, ob->status ? ob->status : "sent");

        } else if (rc == ORBIT_SEND_FAIL
                   || ob->job->attempt >= ob->job->max_attempts)
        {
            orbit_outbound_publish(ob, "failed");
        }
    }

    orbit_channel_out_release(&ob->out);

    orbit_job_finish(ob->job, &done);
}


/*
 * A send the provider took: orbit_message_sent() committed on its own
 * (it is idempotent), with the statuses that came before it (014), so
 * message_status says what the message is.  NGX_ERROR: not started, the
 * job's outcome carries it instead.
 */

static ngx_int_t
orbit_outbound_record(orbit_outbound_t *ob, const char **v)
{
    orbit_pg_pool_t   *pg;
    orbit_pg_query_t  *q;

    pg = ngx_http_orbit_pg();
    q = orbit_pg_query_create(ob->job->pool);

    if (pg == NULL || q == NULL) {
        return NGX_ERROR;
    }

    q->sql = orbit_outbound_sent_sql;
    q->nparams = 4;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_outbound_recorded;
    q->data = ob;

    return orbit_pg_query_send(pg, q);
}


static void
orbit_outbound_recorded(orbit_pg_query_t *q, PGresult *res)
{
    orbit_outbound_t  *ob = q->data;

    json_t      *now;
    const char  *status;

    ob->recorded = 1;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1)
    {
        /* the job's outcome records it, retried while PostgreSQL is away */
        orbit_outbound_done(ob, ORBIT_SEND_DONE);
        return;
    }

    now = json_loadb(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0), 0,
                     NULL);
    status = json_string_value(json_object_get(now, "status"));

    if (status) {
        ob->status = orbit_api_strdup(ob->job->pool, status);
    }

    json_decref(now);

    orbit_outbound_finish_sent(ob);
}


/* recorded: the event, then the job done with nothing left to apply */

static void
orbit_outbound_finish_sent(orbit_outbound_t *ob)
{
    orbit_job_outcome_t  done;

    orbit_outbound_publish(ob, ob->status ? ob->status : "sent");

    orbit_channel_out_release(&ob->out);

    ngx_memzero(&done, sizeof(orbit_job_outcome_t));
    done.status = ORBIT_JOB_DONE;

    orbit_job_finish(ob->job, &done);
}


/* message_status to the conversation's room and the staff */

static void
orbit_outbound_publish(orbit_outbound_t *ob, const char *status)
{
    u_char     *p;
    ngx_str_t   data;

    if (ob->conversation.len == 0 || ob->conversation.len > 48
        || ob->out.tenant.len > 48)
    {
        return;
    }

    data.len = sizeof("{\"messageId\":\"\",\"conversationId\":\"\","
                      "\"status\":\"\",\"error\":}")
               + ngx_strlen(ob->message_id) + ob->conversation.len
               + ngx_strlen(status) + ob->out.error.len + 4;
    data.data = ngx_pnalloc(ob->job->pool, data.len);
    if (data.data == NULL) {
        return;
    }

    p = ngx_sprintf(data.data, "{\"messageId\":\"%s\",\"conversationId\":"
                    "\"%V\",\"status\":\"%s\",\"error\":",
                    ob->message_id, &ob->conversation, status);

    if (ngx_strcmp(status, "failed") == 0 && ob->out.error.len) {
        p = ngx_cpymem(p, ob->out.error.data, ob->out.error.len);

    } else {
        p = ngx_cpymem(p, "null", 4);
    }

    *p++ = '}';
    data.len = p - data.data;

    (void) orbit_rt_inbox_event(&ob->out.tenant, &ob->conversation,
                                &ob->audience, "message_status", &data,
                                ob->job->log);
}




static void
orbit_outbound_fail(orbit_job_t *job, const char *why)
{
    orbit_job_outcome_t  done;

    ngx_memzero(&done, sizeof(orbit_job_outcome_t));
    done.status = ORBIT_JOB_FAIL;
    done.error.data = (u_char *) why;
    done.error.len = ngx_strlen(why);

    orbit_job_finish(job, &done);
}
