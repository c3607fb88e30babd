/*
 * OrbitDesk channels: the media.fetch job, which keeps a copy of the media
 * a customer sent, before the provider forgets it (WhatsApp's media URLs
 * expire within minutes of asking, its media after 30 days).
 *
 *   media.fetch {messageId, messageCreatedAt, conversationId}
 *       enqueued with every inbound message whose content.media names
 *       the provider's media (009_media.sql, a trigger)
 *
 * A run: load the message and its connection (one statement) -> open the
 * credentials -> the adapter's media hook locates the bytes (WhatsApp:
 * GET /{media-id} -> a short-lived URL) -> the download, capped at
 * orbit_media_max_size -> the storage (orbit_storage_put: hashed and
 * written off the event loop) -> the job ends, its effect committed with
 * it (orbit_media_fetched(): the media row, the message's content.media
 * pointing at it) -> message_updated to the conversation's rooms.
 *
 * A download redirected (Twilio's media URLs answer 307 with a short-lived
 * URL on another host) is followed by a fresh GET without any header: the
 * adapter's credentials are for the provider's API, never for where it
 * sends us.  At most ORBIT_MEDIA_REDIRECTS_MAX times, to an absolute
 * http(s) URL; anything else fails for good.
 *
 * 5xx, 429 and no answer are retried with the queue's backoff; another
 * 4xx fails for good (the provider has forgotten the media).  A message
 * whose media is already ours is left alone.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"
#include "channels/orbit_channel_creds.h"
#include "realtime/orbit_rooms.h"


#define ORBIT_MEDIA_HTTP_TIMEOUT  60000

/* Twilio's 307 to S3, and one more of S3's own (a regional endpoint) */
#define ORBIT_MEDIA_REDIRECTS_MAX  2

/* the bytes of a refusal's body kept in the job's error */
#define ORBIT_MEDIA_EXCERPT_MAX    160


typedef struct {
    orbit_job_t                 *job;
    const orbit_channel_t       *ch;
    orbit_channel_out_t          out;
    json_t                      *media;        /* in out.message */
    const char                  *message_id;
    const char                  *created_at;
    ngx_str_t                    conversation;
    ngx_str_t                    audience;
    const char                  *mime;
    orbit_storage_op_t          *op;
    const char                 **values;       /* of the record */
    char                         id[ORBIT_UUID_LEN + 1];
    ngx_uint_t                   redirects;
    unsigned                     downloading:1;
} orbit_media_fetch_t;


/* the load's columns */
enum {
    ORBIT_MF_MESSAGE = 0,
    ORBIT_MF_CHANNEL,
    ORBIT_MF_ACCOUNT,
    ORBIT_MF_CONFIG,
    ORBIT_MF_CREDENTIALS,
    ORBIT_MF_CONN_STATUS,
    ORBIT_MF_TENANT,
    ORBIT_MF_CONN_ID,
    ORBIT_MF_CONVERSATION,
    ORBIT_MF_AUDIENCE
};


static void orbit_media_fetch_loaded(orbit_pg_query_t *q, PGresult *res);
static ngx_int_t orbit_media_fetch_prepare(orbit_media_fetch_t *mf,
    PGresult *res);
static ngx_int_t orbit_media_fetch_direct(orbit_media_fetch_t *mf);
static ngx_int_t orbit_media_fetch_send(orbit_media_fetch_t *mf);
static void orbit_media_fetch_answered(orbit_http_req_t *req);
static void orbit_media_fetch_refused(orbit_media_fetch_t *mf,
    orbit_http_req_t *req);
static void orbit_media_fetch_redirected(orbit_media_fetch_t *mf);
static ngx_uint_t orbit_media_fetch_absolute(ngx_str_t *url);
static ngx_str_t *orbit_media_fetch_header(orbit_http_req_t *req,
    const char *name, size_t len);
static void orbit_media_fetch_store(orbit_media_fetch_t *mf);
static void orbit_media_fetch_stored(orbit_storage_op_t *op);
static ngx_int_t orbit_media_fetch_record(orbit_media_fetch_t *mf);
static void orbit_media_fetch_recorded(orbit_pg_query_t *q, PGresult *res);
static void orbit_media_fetch_done(orbit_media_fetch_t *mf,
    ngx_uint_t recorded);
static void orbit_media_fetch_publish(orbit_media_fetch_t *mf);
static void orbit_media_fetch_end(orbit_media_fetch_t *mf,
    orbit_job_status_e status, const char *why);


static const char  orbit_media_fetched_sql[] =
    "SELECT orbit_media_fetched($1::uuid, $2::uuid, $3::uuid,"
    "  $4::timestamptz, $5, $6, $7, $8::bigint, $9, $10)";


ngx_int_t
orbit_media_fetch_job(orbit_job_t *job)
{
    const char          **v;
    orbit_pg_pool_t      *pg;
    orbit_pg_query_t     *q;
    orbit_media_fetch_t  *mf;

    static const char  sql[] =
        "SELECT orbit_message_json(m), cn.channel, cn.account_id,"
        "  cn.config, cn.credentials, cn.status, cn.tenant_id, cn.id, c.id,"
        "  trim('staff ' || COALESCE(c.assignee_id::text, ''))"
        " FROM messages m"
        " JOIN conversations c ON c.id = m.conversation_id"
        " LEFT JOIN channel_connections cn ON cn.id = c.connection_id"
        " WHERE m.id = $1::uuid AND m.created_at = $2::timestamptz"
        "   AND m.tenant_id = $3::uuid";

    mf = ngx_pcalloc(job->pool, sizeof(orbit_media_fetch_t));
    v = ngx_pcalloc(job->pool, 3 * sizeof(char *));
    if (mf == NULL || v == NULL) {
        return NGX_ERROR;
    }

    mf->job = job;
    mf->out.pool = job->pool;
    mf->out.log = job->log;

    if (orbit_channel_out_guard(&mf->out, job->pool) != NGX_OK) {
        return NGX_ERROR;
    }

    v[0] = json_string_value(json_object_get(job->json, "messageId"));
    v[1] = json_string_value(json_object_get(job->json, "messageCreatedAt"));
    v[2] = job->tenant_id.len
           ? orbit_api_strdup_n(job->pool, job->tenant_id.data,
                                job->tenant_id.len)
           : NULL;

    if (v[0] == NULL || v[1] == NULL || v[2] == NULL) {
        orbit_media_fetch_end(mf, ORBIT_JOB_FAIL,
                              "the job's payload is incomplete");
        return NGX_OK;
    }

    mf->message_id = v[0];
    mf->created_at = v[1];

    pg = ngx_http_orbit_pg();
    q = orbit_pg_query_create(job->pool);

    if (pg == NULL || q == NULL) {
        return NGX_ERROR;
    }

    q->sql = sql;
    q->nparams = 3;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_media_fetch_loaded;
    q->data = mf;

    if (orbit_pg_query_send(pg, q) != NGX_OK) {
        return NGX_ERROR;       /* PostgreSQL away: tried again later */
    }

    return NGX_OK;
}


static void
orbit_media_fetch_loaded(orbit_pg_query_t *q, PGresult *res)
{
    orbit_media_fetch_t  *mf = q->data;

    ngx_int_t  rc;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY,
                              "the message could not be loaded");
        return;
    }

    if (PQntuples(res) != 1) {
        orbit_media_fetch_end(mf, ORBIT_JOB_FAIL, "the message is gone");
        return;
    }

    rc = orbit_media_fetch_prepare(mf, res);

    switch (rc) {

    case NGX_OK:
        mf->downloading = 0;
        break;

    case NGX_DONE:
        mf->downloading = 1;
        break;

    case NGX_ABORT:
        orbit_media_fetch_end(mf, ORBIT_JOB_DONE, NULL);
        return;

    case NGX_DECLINED:
        orbit_media_fetch_end(mf, ORBIT_JOB_FAIL,
                              mf->out.error.len
                              ? orbit_api_strdup_n(mf->job->pool,
                                                   mf->out.error.data,
                                                   mf->out.error.len)
                              : "the media cannot be fetched");
        return;

    default:
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY,
                              "the media's request could not be made");
        return;
    }

    if (orbit_media_fetch_send(mf) != NGX_OK) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY,
                              "the media's request could not start");
    }
}


/*
 * The adapter's first request: NGX_OK to locate, NGX_DONE when it is the
 * download, NGX_ABORT when the media is ours already, NGX_DECLINED when it
 * cannot be fetched (out.error), NGX_ERROR to try again later.
 */

static ngx_int_t
orbit_media_fetch_prepare(orbit_media_fetch_t *mf, PGresult *res)
{
    char                 *message, *config;
    ngx_str_t             tenant, conn;
    ngx_pool_t           *pool;
    json_error_t          err;
    orbit_channel_out_t  *out;

    out = &mf->out;
    pool = mf->job->pool;

    message = orbit_pg_value(pool, res, 0, ORBIT_MF_MESSAGE);
    out->message = message ? json_loads(message, 0, &err) : NULL;

    if (out->message == NULL) {
        return NGX_ERROR;
    }

    mf->media = json_object_get(json_object_get(out->message, "content"),
                                "media");

    if (json_object_get(mf->media, "mediaId")) {
        return NGX_ABORT;
    }

    if (!json_is_object(mf->media)) {
        orbit_channel_error(out, 400, "The message has no media");
        return NGX_DECLINED;
    }

    if (PQgetisnull(res, 0, ORBIT_MF_CHANNEL)) {
        orbit_channel_error(out, 409, "The conversation's channel is not "
                                      "connected any more");
        return NGX_DECLINED;
    }

    mf->ch = orbit_channel_for(PQgetvalue(res, 0, ORBIT_MF_CHANNEL));

    if (mf->ch == NULL) {
        orbit_channel_error(out, 501, "This channel's media cannot be "
                                      "fetched");
        return NGX_DECLINED;
    }

    tenant.data = (u_char *) orbit_pg_value(pool, res, 0, ORBIT_MF_TENANT);
    conn.data = (u_char *) orbit_pg_value(pool, res, 0, ORBIT_MF_CONN_ID);
    out->account = orbit_pg_value(pool, res, 0, ORBIT_MF_ACCOUNT);
    mf->conversation.data = (u_char *) orbit_pg_value(pool, res, 0,
                                                      ORBIT_MF_CONVERSATION);
    mf->audience.data = (u_char *) orbit_pg_value(pool, res, 0,
                                                  ORBIT_MF_AUDIENCE);
    config = orbit_pg_value(pool, res, 0, ORBIT_MF_CONFIG);

    if (tenant.data == NULL || conn.data == NULL || out->account == NULL
        || mf->conversation.data == NULL || mf->audience.data == NULL)
    {
        return NGX_ERROR;
    }

    tenant.len = ngx_strlen(tenant.data);
    conn.len = ngx_strlen(conn.data);
    out->tenant = tenant;
    mf->conversation.len = ngx_strlen(mf->conversation.data);
    mf->audience.len = ngx_strlen(mf->audience.data);

    out->config = config ? json_loads(config, 0, &err) : json_object();
    out->credentials = orbit_channel_creds_open(mf->job->log,
                           (u_char *) PQgetvalue(res, 0,
                                                 ORBIT_MF_CREDENTIALS),
                           PQgetlength(res, 0, ORBIT_MF_CREDENTIALS),
                           &tenant, &conn);

    if (out->config == NULL) {
        return NGX_ERROR;
    }

    if (out->credentials == NULL) {
        orbit_channel_error(out, 401, "The connection's credentials do not "
                                      "open: enter them again");
        return NGX_DECLINED;
    }

    out->req = orbit_http_req_create(mf->job->pool);
    if (out->req == NULL) {
        return NGX_ERROR;
    }

    if (mf->ch->media) {
        return mf->ch->media(out, mf->media);
    }

    if (mf->ch->flags & ORBIT_CHANNEL_MEDIA_URL) {
        return orbit_media_fetch_direct(mf);
    }

    orbit_channel_error(out, 501, "This channel's media cannot be fetched");
    return NGX_DECLINED;
}


/*
 * A channel whose provider names media by a URL anyone holding it may
 * fetch (Messenger's and Instagram's CDN links, which expire): the
 * download itself, with no credentials.  Only for such channels
 * (ORBIT_CHANNEL_MEDIA_URL): a URL a tenant's own peer sent (the API
 * channel) is never fetched from here.
 */

static ngx_int_t
orbit_media_fetch_direct(orbit_media_fetch_t *mf)
{
    ngx_str_t    url;
    const char  *s;

    s = json_string_value(json_object_get(mf->media, "url"));

    url.data = (u_char *) s;
    url.len = s ? ngx_strlen(s) : 0;

    if (s == NULL || !orbit_media_fetch_absolute(&url)) {
        orbit_channel_error(&mf->out, 400, "The media has no URL to fetch "
                                           "it by");
        return NGX_DECLINED;
    }

    mf->out.req->url.data = ngx_pnalloc(mf->job->pool, url.len);
    if (mf->out.req->url.data == NULL) {
        return NGX_ERROR;
    }

    mf->out.req->url.len = url.len;
    ngx_memcpy(mf->out.req->url.data, url.data, url.len);

    return NGX_DONE;
}


/* out.req as the adapter made it, with our handler and limits */

static ngx_int_t
orbit_media_fetch_send(orbit_media_fetch_t *mf)
{
    orbit_http_req_t  *req;

    req = mf->out.req;

    req->timeout = ORBIT_MEDIA_HTTP_TIMEOUT;
    req->handler = orbit_media_fetch_answered;
    req->data = mf;

    /* URLs someone else named: never to our own network */
    req->public_only = 1;
    req->allow = ngx_http_orbit_storage()->fetch_allow;

    if (mf->downloading) {
        req->max_response = ngx_http_orbit_storage()->max_size;
    }

    return orbit_http_send(ngx_http_orbit_http_client(), req);
}


static void
orbit_media_fetch_answered(orbit_http_req_t *req)
{
    orbit_media_fetch_t  *mf = req->data;

    ngx_int_t  rc;

    if (mf->downloading
        && (req->status == NGX_HTTP_MOVED_PERMANENTLY
            || req->status == NGX_HTTP_MOVED_TEMPORARILY
            || req->status == NGX_HTTP_SEE_OTHER
            || req->status == NGX_HTTP_TEMPORARY_REDIRECT
            || req->status == NGX_HTTP_PERMANENT_REDIRECT))
    {
        orbit_media_fetch_redirected(mf);
        return;
    }

    if (req->status < 200 || req->status > 299) {
        orbit_media_fetch_refused(mf, req);
        return;
    }

    if (mf->downloading) {
        orbit_media_fetch_store(mf);
        return;
    }

    /* located: the adapter makes the download's request */

    rc = mf->ch->media_located ? mf->ch->media_located(&mf->out)
                               : NGX_DECLINED;

    if (rc != NGX_OK) {
        orbit_media_fetch_end(mf, rc == NGX_DECLINED ? ORBIT_JOB_FAIL
                                                     : ORBIT_JOB_RETRY,
                              mf->out.error.len
                              ? orbit_api_strdup_n(mf->job->pool,
                                                   mf->out.error.data,
                                                   mf->out.error.len)
                              : "the provider's answer names no media");
        return;
    }

    mf->downloading = 1;

    if (orbit_media_fetch_send(mf) != NGX_OK) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY,
                              "the download could not start");
    }
}


/*
 * No success: retried when the answer may change (5xx, 429, none),
 * failed for good otherwise; the reason with the start of the answer's
 * body (Telegram's "file is too big", Graph's error), printable only.
 */

static void
orbit_media_fetch_refused(orbit_media_fetch_t *mf, orbit_http_req_t *req)
{
    u_char  *why, *p, *s, *last;
    size_t   n;

    n = ngx_min(req->response.len, ORBIT_MEDIA_EXCERPT_MAX);
    why = ngx_pnalloc(mf->job->pool, 96 + req->error.len + n);

    if (why) {
        if (req->status) {
            p = ngx_sprintf(why, "the %s answered %ui",
                            mf->downloading ? "download" : "provider",
                            req->status);

            if (n) {
                p = ngx_cpymem(p, ": ", 2);
                s = req->response.data;

                for (last = s + n; s < last; s++) {
                    *p++ = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
                }
            }

            *p = '\0';

        } else {
            ngx_sprintf(why, "no answer: %V%Z", &req->error);
        }
    }

    if (req->refused) {
        orbit_media_fetch_end(mf, ORBIT_JOB_FAIL, "the media's address is not "
                                                  "a public one");
        return;
    }

    if (req->too_large) {
        orbit_media_fetch_end(mf, ORBIT_JOB_FAIL, "the media is larger than "
                                                  "orbit_media_max_size");
        return;
    }

    orbit_media_fetch_end(mf,
                          (req->status == 0 || req->status == 429
                           || req->status >= 500)
                          ? ORBIT_JOB_RETRY : ORBIT_JOB_FAIL,
                          why ? (char *) why : "the provider refused");
}


/*
 * The download sent elsewhere: its Location, by a fresh GET with no
 * header at all (the adapter's Basic auth or token stays with the
 * provider's API), the same timeout and size limit.
 */

static void
orbit_media_fetch_redirected(orbit_media_fetch_t *mf)
{
    u_char            *why;
    ngx_str_t         *location;
    orbit_http_req_t  *req;

    if (mf->redirects == ORBIT_MEDIA_REDIRECTS_MAX) {
        why = ngx_pnalloc(mf->job->pool, 64);
        if (why) {
            ngx_sprintf(why, "the download was redirected more than %d "
                        "times%Z", ORBIT_MEDIA_REDIRECTS_MAX);
        }

        orbit_media_fetch_end(mf, ORBIT_JOB_FAIL,
                              why ? (char *) why
                                  : "the download was redirected too often");
        return;
    }

    location = orbit_media_fetch_header(mf->out.req, "location",
                                        sizeof("location") - 1);

    if (location == NULL || !orbit_media_fetch_absolute(location)) {
        orbit_media_fetch_end(mf, ORBIT_JOB_FAIL,
                              "the download was redirected without a "
                              "Location that is an absolute http(s) URL");
        return;
    }

    req = orbit_http_req_create(mf->job->pool);
    if (req == NULL) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY, "out of memory");
        return;
    }

    req->url.len = location->len;
    req->url.data = ngx_pnalloc(mf->job->pool, location->len);
    if (req->url.data == NULL) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY, "out of memory");
        return;
    }

    ngx_memcpy(req->url.data, location->data, location->len);
    ngx_str_set(&req->method, "GET");

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, mf->job->log, 0,
                   "media.fetch: redirected (%ui) to %V",
                   mf->out.req->status, &req->url);

    mf->redirects++;
    mf->out.req = req;

    if (orbit_media_fetch_send(mf) != NGX_OK) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY,
                              "the redirected download could not start");
    }
}


/* "http(s)://" with a host, and nothing a request line cannot carry */

static ngx_uint_t
orbit_media_fetch_absolute(ngx_str_t *url)
{
    u_char  *p, *last;
    size_t   n;

    if (url->len > 8
        && ngx_strncasecmp(url->data, (u_char *) "https://", 8) == 0)
    {
        n = 8;

    } else if (url->len > 7
               && ngx_strncasecmp(url->data, (u_char *) "http://", 7) == 0)
    {
        n = 7;

    } else {
        return 0;
    }

    if (url->len > 4096
        || url->data[n] == '/' || url->data[n] == '?'
        || url->data[n] == '#' || url->data[n] == '@')
    {
        return 0;
    }

    last = url->data + url->len;

    for (p = url->data; p < last; p++) {
        if (*p <= 0x20 || *p >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


/* the value of the answer's header name (lower case), or NULL */

static ngx_str_t *
orbit_media_fetch_header(orbit_http_req_t *req, const char *name, size_t len)
{
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    if (req->response_headers == NULL) {
        return NULL;
    }

    h = req->response_headers->elts;

    for (i = 0; i < req->response_headers->nelts; i++) {
        if (h[i].key.len == len
            && ngx_strncmp(h[i].lowcase_key, name, len) == 0)
        {
            return &h[i].value;
        }
    }

    return NULL;
}


/* the bytes, to the storage under "<tenant>/<a new id>" */

static void
orbit_media_fetch_store(orbit_media_fetch_t *mf)
{
    ngx_str_t           *type;
    orbit_http_req_t    *req;
    orbit_storage_op_t  *op;

    req = mf->out.req;

    /* the type: the download's Content-Type, else what the webhook said */

    mf->mime = json_string_value(json_object_get(mf->media, "mimeType"));
    type = orbit_media_fetch_header(req, "content-type",
                                    sizeof("content-type") - 1);

    if (type && type->len && type->len < 256
        && (mf->mime == NULL
            || type->len < 24
            || ngx_strncasecmp(type->data,
                               (u_char *) "application/octet-stream", 24)
               != 0))
    {
        mf->mime = orbit_media_type(mf->job->pool, type->data, type->len);

    } else {
        /* the webhook's word (the sender's, on Telegram): checked too; a
         * copy, as it outlives the message's JSON */

        mf->mime = orbit_media_type(mf->job->pool,
                                    (u_char *) (mf->mime ? mf->mime : ""),
                                    mf->mime ? ngx_strlen(mf->mime) : 0);
    }

    op = orbit_storage_op_create(mf->job->pool);

    if (op == NULL || mf->mime == NULL || orbit_random_uuid(mf->id) != 0) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY, "out of memory");
        return;
    }

    op->storage = ngx_http_orbit_storage();
    op->http = ngx_http_orbit_http_client();
    op->key.len = mf->out.tenant.len + 1 + ORBIT_UUID_LEN;
    op->key.data = ngx_pnalloc(mf->job->pool, op->key.len);
    op->mime.data = (u_char *) mf->mime;
    op->mime.len = ngx_strlen(mf->mime);
    op->data = req->response;
    op->handler = orbit_media_fetch_stored;
    op->ctx = mf;
    op->log = mf->job->log;

    if (op->key.data == NULL) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY, "out of memory");
        return;
    }

    ngx_sprintf(op->key.data, "%V/%s", &mf->out.tenant, mf->id);

    mf->op = op;

    if (orbit_storage_put(op) != NGX_OK) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY,
                              "the media could not be stored");
    }
}


static void
orbit_media_fetch_stored(orbit_storage_op_t *op)
{
    orbit_media_fetch_t  *mf = op->ctx;

    u_char               *size;
    const char           *name;
    const char          **v;

    if (op->rc != NGX_OK) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY,
                              op->error.len
                              ? orbit_api_strdup_n(mf->job->pool,
                                                   op->error.data,
                                                   op->error.len)
                              : "the media could not be stored");
        return;
    }

    v = ngx_pcalloc(mf->job->pool, 10 * sizeof(char *));
    size = ngx_pnalloc(mf->job->pool, NGX_SIZE_T_LEN + 1);

    if (v == NULL || size == NULL) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY, "out of memory");
        return;
    }

    ngx_sprintf(size, "%uz%Z", op->data.len);

    v[0] = orbit_api_strdup_n(mf->job->pool, mf->out.tenant.data,
                              mf->out.tenant.len);
    v[1] = mf->id;
    v[2] = mf->message_id;
    v[3] = mf->created_at;
    v[4] = orbit_storage_name(op->storage);
    v[5] = orbit_api_strdup_n(mf->job->pool, op->key.data, op->key.len);
    v[6] = mf->mime;
    v[7] = (char *) size;
    v[8] = op->sha256;

    /* copied: the message's JSON is released before the effect runs */

    name = json_string_value(json_object_get(mf->media, "filename"));
    v[9] = orbit_media_filename(mf->job->pool, name);

    if (v[0] == NULL || v[5] == NULL) {
        orbit_media_fetch_end(mf, ORBIT_JOB_RETRY, "out of memory");
        return;
    }

    /* committed first, so message_updated names a media that exists */

    mf->values = v;

    if (orbit_media_fetch_record(mf) != NGX_OK) {
        orbit_media_fetch_done(mf, 0);
    }
}


static ngx_int_t
orbit_media_fetch_record(orbit_media_fetch_t *mf)
{
    orbit_pg_pool_t   *pg;
    orbit_pg_query_t  *q;

    pg = ngx_http_orbit_pg();
    q = orbit_pg_query_create(mf->job->pool);

    if (pg == NULL || q == NULL) {
        return NGX_ERROR;
    }

    q->sql = orbit_media_fetched_sql;
    q->nparams = 10;
    q->values = mf->values;
    q->prepare = 1;
    q->handler = orbit_media_fetch_recorded;
    q->data = mf;

    return orbit_pg_query_send(pg, q);
}


static void
orbit_media_fetch_recorded(orbit_pg_query_t *q, PGresult *res)
{
    orbit_media_fetch_t  *mf = q->data;

    orbit_media_fetch_done(mf, res && PQresultStatus(res) == PGRES_TUPLES_OK);
}


/*
 * The job's end: recorded, the event and nothing left to apply; else the
 * outcome applies it (orbit_media_fetched() is idempotent), retried while
 * PostgreSQL is away, and the inbox hears of it on its next read.
 */

static void
orbit_media_fetch_done(orbit_media_fetch_t *mf, ngx_uint_t recorded)
{
    orbit_job_outcome_t  done;

    /* the last use of the run's pool: finishing may destroy it */

    if (recorded) {
        orbit_media_fetch_publish(mf);
    }

    orbit_channel_out_release(&mf->out);

    ngx_memzero(&done, sizeof(orbit_job_outcome_t));
    done.status = ORBIT_JOB_DONE;

    if (!recorded) {
        done.effect = orbit_media_fetched_sql;
        done.nparams = 10;
        done.values = mf->values;
    }

    orbit_job_finish(mf->job, &done);
}


/* message_updated {messageId, conversationId, media} to its rooms */

static void
orbit_media_fetch_publish(orbit_media_fetch_t *mf)
{
    char       *text;
    json_t     *data, *media;
    ngx_str_t   json;

    if (mf->conversation.len > 48 || mf->out.tenant.len > 48) {
        return;
    }

    media = json_deep_copy(mf->media);
    if (media == NULL) {
        return;
    }

    json_object_set_new(media, "mediaId", json_string(mf->id));
    json_object_set_new(media, "url", json_sprintf("/api/v1/media/%s",
                                                   mf->id));
    json_object_set_new(media, "mimeType", json_string(mf->mime));
    json_object_set_new(media, "size",
                        json_integer((json_int_t) mf->op->data.len));

    data = json_pack("{s:s, s:s%, s:o}", "messageId", mf->message_id,
                     "conversationId", mf->conversation.data,
                     mf->conversation.len, "media", media);
    text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);

    if (text == NULL) {
        return;
    }

    json.data = (u_char *) text;
    json.len = ngx_strlen(text);

    (void) orbit_rt_inbox_event(&mf->out.tenant, &mf->conversation,
                                &mf->audience, "message_updated", &json,
                                mf->job->log);

    free(text);
}


static void
orbit_media_fetch_end(orbit_media_fetch_t *mf, orbit_job_status_e status,
    const char *why)
{
    orbit_job_outcome_t  done;

    if (status != ORBIT_JOB_DONE) {
        ngx_log_error(NGX_LOG_WARN, mf->job->log, 0, "media.fetch %s: %s",
                      status == ORBIT_JOB_RETRY ? "retried" : "failed", why);
    }

    orbit_channel_out_release(&mf->out);

    ngx_memzero(&done, sizeof(orbit_job_outcome_t));
    done.status = status;

    if (why) {
        done.error.data = (u_char *) why;
        done.error.len = ngx_strlen(why);
    }

    orbit_job_finish(mf->job, &done);
}


