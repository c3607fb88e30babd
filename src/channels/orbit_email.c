/*
 * OrbitDesk channels: Email, SMTP out and IMAP in.
 *
 * A connection: accountId the mailbox's address; config {smtpUrl
 * "smtp[s]://host:port", imapUrl "imap[s]://host:port/MAILBOX", fromName?,
 * subject? (when a conversation has none), pollInterval? seconds (60, at
 * least 10)}; credentials {username, password}, for both servers.
 *
 * Out (message.send): the reply as RFC 5322 + MIME (src/core/orbit_mime.c)
 * to the contact's address, Message-ID <our message id@our domain>, which
 * becomes the message's provider id; In-Reply-To and References from the
 * message replied to, else the conversation's newest inbound mail, and
 * its subject with "Re: ".  libcurl speaks SMTP through orbit_http_client,
 * in the event loop.  A 5xx reply fails the message with the server's
 * text; 4xx replies and no answer are retried.
 *
 * Setup (channel.setup): the configuration checked and an IMAP login with
 * the mailbox selected; a refused login fails the setup, and the
 * connection gets no poll.
 *
 * In (channel.poll, periodic): UID SEARCH for the UIDs after the cursor
 * (email_cursors, 013), at most ORBIT_EMAIL_BATCH of them fetched one by
 * one (a login each: see orbit_email_imap_req), parsed, and stored through
 * the pipeline by orbit_email_inbound(), which commits the cursor with
 * the messages.  A UIDVALIDITY that changed resets the cursor; the
 * Message-ID (else a hash of the mail) dedupes.  Then the job repeats
 * after pollInterval, or at once when more mail waits.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"
#include "channels/orbit_channel_creds.h"
#include "core/orbit_mime.h"

#include <curl/curl.h>


#define ORBIT_EMAIL_BATCH        50          /* mails per poll */
#define ORBIT_EMAIL_RUN_MAX      60000       /* ms of fetching per poll */
#define ORBIT_EMAIL_TIMEOUT      30000       /* one IMAP transfer */
#define ORBIT_EMAIL_MAIL_MAX     (32 * 1024 * 1024)
#define ORBIT_EMAIL_POLL_MIN     10
#define ORBIT_EMAIL_POLL_DEFAULT 60


typedef struct {
    ngx_str_t                    smtp;
    ngx_str_t                    imap;         /* with its mailbox */
    const char                  *from_name;
    const char                  *subject;
    ngx_str_t                    username;
    ngx_str_t                    password;
    ngx_msec_t                   interval;
} orbit_email_conf_t;


/* one channel.poll run */
typedef struct {
    orbit_job_t                 *job;
    orbit_email_conf_t           conf;
    const char                  *account;
    const char                  *connection;
    uint64_t                     validity;     /* the cursor's */
    uint64_t                     last;
    uint64_t                     seen;         /* handled up to */
    uint64_t                     uidvalidity;  /* the mailbox's */
    ngx_array_t                  uids;         /* of uint64_t, to fetch */
    ngx_uint_t                   next;
    ngx_msec_t                   start;
    json_t                      *items;
    orbit_http_req_t            *req;
    orbit_pipeline_store_t       store;
    ngx_str_t                    error;        /* a fetch cut short */
    unsigned                     cursor:1;     /* there is one */
    unsigned                     researched:1;
    unsigned                     more:1;
} orbit_email_poll_t;


static ngx_int_t orbit_email_verify(orbit_channel_in_t *in);
static ngx_int_t orbit_email_normalize(orbit_channel_in_t *in);
static ngx_int_t orbit_email_send(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_email_sent(orbit_channel_out_t *out);
static ngx_int_t orbit_email_connect(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_email_connected(orbit_channel_out_t *out);

static const char *orbit_email_conf(ngx_pool_t *pool, json_t *config,
    json_t *credentials, orbit_email_conf_t *conf);
static const char *orbit_email_url(ngx_pool_t *pool, json_t *config,
    const char *key, const char *scheme, ngx_str_t *url);
static char *orbit_email_subject(ngx_pool_t *pool, const char *subject);
static char *orbit_email_reply(ngx_pool_t *pool, ngx_str_t *reply,
    ngx_uint_t *code);
static char *orbit_email_refusal(ngx_pool_t *pool, ngx_str_t *reply);
static void orbit_email_imap_req(orbit_http_req_t *req,
    orbit_email_conf_t *conf);

static void orbit_email_loaded(orbit_pg_query_t *q, PGresult *res);
static ngx_int_t orbit_email_search(orbit_email_poll_t *p);
static void orbit_email_searched(orbit_http_req_t *req);
static void orbit_email_fetch(orbit_email_poll_t *p);
static void orbit_email_fetched(orbit_http_req_t *req);
static ngx_int_t orbit_email_item(orbit_email_poll_t *p, u_char *data,
    size_t len);
static void orbit_email_store(orbit_email_poll_t *p);
static void orbit_email_stored(orbit_pipeline_store_t *ps);
static void orbit_email_poll_failed(orbit_email_poll_t *p,
    orbit_http_req_t *req);
static void orbit_email_poll_end(orbit_email_poll_t *p,
    orbit_job_status_e status, const char *error, ngx_int_t code);
static int orbit_email_uid_cmp(const void *a, const void *b);


const orbit_channel_t  orbit_channel_email = {
    "email",
    "email",
    NULL,
    orbit_email_verify,
    orbit_email_normalize,
    orbit_email_send,
    orbit_email_sent,
    NULL,
    orbit_email_connect,
    orbit_email_connected,
    NULL,
    NULL,
    ORBIT_CHANNEL_POLLED,
    NULL,
};


/* the committed effects */

static const char  orbit_email_inbound_sql[] =
    "SELECT orbit_email_inbound($1::jsonb, $2::uuid, $3::bigint,"
    " $4::bigint)";

static const char  orbit_email_poll_failed_sql[] =
    "UPDATE channel_connections SET setup = jsonb_build_object("
    "  'status', 'failed', 'error', $2::jsonb, 'at', now())"
    " FROM job WHERE channel_connections.id = $1::uuid"
    "   AND job.status = 'failed'";


/* mail is fetched, not pushed: no webhook */

static ngx_int_t
orbit_email_verify(orbit_channel_in_t *in)
{
    in->error = "Email has no webhook: its mail is fetched over IMAP";
    return NGX_HTTP_NOT_FOUND;
}


static ngx_int_t
orbit_email_normalize(orbit_channel_in_t *in)
{
    in->error = "Email has no webhook: its mail is fetched over IMAP";
    return NGX_HTTP_NOT_FOUND;
}


/* ---------------------------------------------------------------- out */

static ngx_int_t
orbit_email_send(orbit_channel_out_t *out)
{
    int                  rc;
    char                *mail, *msgid, *refs, *boundary, *subject;
    size_t               len;
    json_t              *content, *tc;
    ngx_str_t           *rcpt;
    const char          *err, *type, *text, *id, *irt, *tsubj, *domain;
    orbit_mime_out_t     m;
    orbit_email_conf_t   conf;

    err = orbit_email_conf(out->pool, out->config, out->credentials, &conf);

    if (err == NULL && conf.smtp.len == 0) {
        err = "config.smtpUrl is required to send";
    }

    if (err) {
        orbit_channel_error(out, 400, err);
        return NGX_DECLINED;
    }

    content = json_object_get(out->message, "content");
    type = json_string_value(json_object_get(out->message, "type"));
    text = json_string_value(json_object_get(content, "text"));
    id = json_string_value(json_object_get(out->message, "id"));

    if (type == NULL || ngx_strcmp(type, "text") != 0 || text == NULL
        || id == NULL)
    {
        orbit_channel_error(out, 415, "Only text messages go out by email");
        return NGX_DECLINED;
    }

    if (out->to == NULL || !orbit_mime_addr_ok(out->to)) {
        orbit_channel_error(out, 400, "The contact has no e-mail address "
                                      "to send to");
        return NGX_DECLINED;
    }

    if (!orbit_mime_addr_ok(out->account)) {
        orbit_channel_error(out, 400, "The connection's accountId is not an "
                                      "e-mail address");
        return NGX_DECLINED;
    }

    domain = ngx_strchr(out->account, '@') + 1;

    /* our id makes the Message-ID and the boundary: a retry builds the
     * same mail */

    msgid = ngx_pnalloc(out->pool, ngx_strlen(id) + ngx_strlen(domain) + 4);
    boundary = ngx_pnalloc(out->pool, ngx_strlen(id) + sizeof("=_orbit_"));

    if (msgid == NULL || boundary == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_sprintf((u_char *) msgid, "<%s@%s>%Z", id, domain);
    (void) ngx_sprintf((u_char *) boundary, "=_orbit_%s%Z", id);

    /* the thread: what we answer */

    tc = json_object_get(out->thread, "content");
    irt = json_string_value(json_object_get(out->thread,
                                            "providerMessageId"));

    if (irt && !orbit_mime_id_ok(irt, ngx_strlen(irt))) {
        irt = NULL;
    }

    refs = NULL;

    if (irt) {
        tsubj = json_string_value(json_object_get(tc, "references"));
        len = (tsubj ? ngx_strlen(tsubj) + 1 : 0) + ngx_strlen(irt) + 1;

        refs = ngx_pnalloc(out->pool, len);
        if (refs == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_sprintf((u_char *) refs, "%s%s%s%Z", tsubj ? tsubj : "",
                           tsubj ? " " : "", irt);
    }

    subject = NULL;
    tsubj = json_string_value(json_object_get(content, "subject"));

    if (tsubj == NULL || tsubj[0] == '\0') {
        tsubj = json_string_value(json_object_get(tc, "subject"));

        if (tsubj && tsubj[0]) {
            subject = orbit_email_subject(out->pool, tsubj);
            if (subject == NULL) {
                return NGX_ERROR;
            }
        }

        tsubj = subject;
    }

    if (tsubj == NULL || tsubj[0] == '\0') {
        tsubj = conf.subject;
    }

    if (tsubj == NULL || tsubj[0] == '\0') {
        subject = ngx_pnalloc(out->pool, sizeof("Message from ")
                              + ngx_strlen(conf.from_name
                                           ? conf.from_name : out->account));
        if (subject == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_sprintf((u_char *) subject, "Message from %s%Z",
                           conf.from_name ? conf.from_name : out->account);
        tsubj = subject;
    }

    ngx_memzero(&m, sizeof(orbit_mime_out_t));
    m.from_name = conf.from_name;
    m.from_addr = out->account;
    m.to_addr = out->to;
    m.subject = tsubj;
    m.message_id = msgid;
    m.in_reply_to = irt;
    m.references = refs;
    m.text = text;
    m.html = json_string_value(json_object_get(content, "html"));
    m.boundary = boundary;
    m.date = ngx_time();

    rc = orbit_mime_build(&m, &mail, &len);
    if (rc != 0) {
        orbit_channel_error(out, 400, "The mail cannot be built from these "
                                      "addresses");
        return NGX_DECLINED;
    }

    out->req->body.data = ngx_pnalloc(out->pool, len);
    if (out->req->body.data == NULL) {
        free(mail);
        return NGX_ERROR;
    }

    ngx_memcpy(out->req->body.data, mail, len);
    out->req->body.len = len;
    free(mail);

    out->req->url = conf.smtp;
    out->req->protocols = "smtp,smtps";
    out->req->username = conf.username;
    out->req->password = conf.password;
    out->req->mail_from.data = (u_char *) out->account;
    out->req->mail_from.len = ngx_strlen(out->account);

    out->req->mail_rcpt = ngx_array_create(out->pool, 1, sizeof(ngx_str_t));
    if (out->req->mail_rcpt == NULL) {
        return NGX_ERROR;
    }

    rcpt = ngx_array_push(out->req->mail_rcpt);
    if (rcpt == NULL) {
        return NGX_ERROR;
    }

    rcpt->data = (u_char *) out->to;
    rcpt->len = ngx_strlen(out->to);

    return orbit_channel_provider_id(out, msgid);
}


/* the server took it (250 after DATA), refused it (5xx), or later */

static orbit_send_rc_e
orbit_email_sent(orbit_channel_out_t *out)
{
    char        *line, *why;
    ngx_uint_t   code;

    if (out->req->error.len == 0) {
        return ORBIT_SEND_DONE;
    }

    ngx_str_null(&out->provider_id);

    line = orbit_email_reply(out->pool, &out->req->reply, &code);

    if (line && code >= 500) {
        orbit_channel_error(out, code, line);
        return ORBIT_SEND_FAIL;
    }

    if (line && code >= 400) {
        orbit_channel_error(out, code, line);
        return ORBIT_SEND_RETRY;
    }

    why = orbit_api_strdup_n(out->pool, out->req->error.data,
                             out->req->error.len);

    orbit_channel_error(out, 0, why ? why : "no answer from the server");

    return ORBIT_SEND_RETRY;
}


/* -------------------------------------------------------------- setup */

static ngx_int_t
orbit_email_connect(orbit_channel_out_t *out)
{
    const char          *err;
    orbit_email_conf_t   conf;

    err = orbit_email_conf(out->pool, out->config, out->credentials, &conf);

    if (err == NULL && (conf.smtp.len == 0 || conf.imap.len == 0)) {
        err = "config.smtpUrl and config.imapUrl are required";
    }

    if (err == NULL && (conf.username.len == 0 || conf.password.len == 0)) {
        err = "credentials.username and credentials.password are required";
    }

    if (err) {
        orbit_channel_error(out, 400, err);
        return NGX_DECLINED;
    }

    /* a login, the mailbox selected: the poll will work */

    orbit_email_imap_req(out->req, &conf);
    ngx_str_set(&out->req->method, "NOOP");

    return NGX_OK;
}


static orbit_send_rc_e
orbit_email_connected(orbit_channel_out_t *out)
{
    char  *no, *why;

    if (out->req->error.len == 0) {
        return ORBIT_SEND_DONE;
    }

    no = orbit_email_refusal(out->pool, &out->req->reply);

    if (no || out->req->result == CURLE_LOGIN_DENIED) {
        orbit_channel_error(out, 401, no ? no : "IMAP: login refused");
        return ORBIT_SEND_FAIL;
    }

    why = orbit_api_strdup_n(out->pool, out->req->error.data,
                             out->req->error.len);

    orbit_channel_error(out, 0, why ? why : "no answer from the server");

    return ORBIT_SEND_RETRY;
}


/* ---------------------------------------------------------------- in */

ngx_int_t
orbit_email_poll_job(orbit_job_t *job)
{
    const char          **v;
    orbit_pg_pool_t      *pg;
    orbit_pg_query_t     *q;
    orbit_email_poll_t   *p;

    static const char  sql[] =
        "SELECT cn.account_id, cn.config, cn.credentials, cn.status,"
        "  cn.tenant_id, cn.id, ec.uidvalidity, ec.last_uid"
        " FROM channel_connections cn"
        " LEFT JOIN email_cursors ec ON ec.connection_id = cn.id"
        " WHERE cn.id = $1::uuid AND cn.tenant_id = $2::uuid"
        "   AND cn.channel = 'email'";

    p = ngx_pcalloc(job->pool, sizeof(orbit_email_poll_t));
    v = ngx_pcalloc(job->pool, 2 * sizeof(char *));

    if (p == NULL || v == NULL
        || ngx_array_init(&p->uids, job->pool, 16, sizeof(uint64_t))
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    p->job = job;
    p->start = ngx_current_msec;

    v[0] = json_string_value(json_object_get(job->json, "connectionId"));
    v[1] = job->tenant_id.len
           ? orbit_api_strdup_n(job->pool, job->tenant_id.data,
                                job->tenant_id.len)
           : NULL;

    if (v[0] == NULL || v[1] == NULL) {
        orbit_email_poll_end(p, ORBIT_JOB_FAIL,
                             "the job's payload is incomplete", 0);
        return NGX_OK;
    }

    pg = ngx_http_orbit_pg();
    q = orbit_pg_query_create(job->pool);

    if (pg == NULL || q == NULL) {
        return NGX_ERROR;
    }

    q->sql = sql;
    q->nparams = 2;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_email_loaded;
    q->data = p;

    if (orbit_pg_query_send(pg, q) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
orbit_email_loaded(orbit_pg_query_t *q, PGresult *res)
{
    orbit_email_poll_t  *p = q->data;

    json_t        *config, *creds;
    ngx_str_t      tenant, conn;
    const char    *err;
    json_error_t   jerr;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY,
                             "the connection could not be loaded", 0);
        return;
    }

    if (PQntuples(res) != 1
        || ngx_strcmp(PQgetvalue(res, 0, 3), "active") != 0)
    {
        /* gone or disabled: no more polls until it is set up again */
        orbit_email_poll_end(p, ORBIT_JOB_DONE, NULL, 0);
        return;
    }

    p->account = orbit_api_strdup(p->job->pool, PQgetvalue(res, 0, 0));
    p->connection = orbit_api_strdup(p->job->pool, PQgetvalue(res, 0, 5));

    if (p->account == NULL || p->connection == NULL) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "out of memory", 0);
        return;
    }

    if (!PQgetisnull(res, 0, 6)) {
        p->cursor = 1;
        p->validity = ngx_atoof((u_char *) PQgetvalue(res, 0, 6),
                                PQgetlength(res, 0, 6));
        p->last = ngx_atoof((u_char *) PQgetvalue(res, 0, 7),
                            PQgetlength(res, 0, 7));
    }

    p->seen = p->last;

    tenant.data = (u_char *) PQgetvalue(res, 0, 4);
    tenant.len = PQgetlength(res, 0, 4);
    conn.data = (u_char *) PQgetvalue(res, 0, 5);
    conn.len = PQgetlength(res, 0, 5);

    creds = orbit_channel_creds_open(p->job->log,
                                     (u_char *) PQgetvalue(res, 0, 2),
                                     PQgetlength(res, 0, 2), &tenant, &conn);
    config = json_loads(PQgetvalue(res, 0, 1), 0, &jerr);

    if (creds == NULL) {
        json_decref(config);
        orbit_email_poll_end(p, ORBIT_JOB_FAIL, "The connection's "
                             "credentials do not open: enter them again",
                             401);
        return;
    }

    err = orbit_email_conf(p->job->pool, config, creds, &p->conf);

    /* the strings kept are copies in the job's pool */
    json_decref(config);
    json_decref(creds);

    if (err == NULL && p->conf.imap.len == 0) {
        err = "config.imapUrl is required";
    }

    if (err) {
        orbit_email_poll_end(p, ORBIT_JOB_FAIL, err, 400);
        return;
    }

    if (orbit_email_search(p) != NGX_OK) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "the search could not "
                             "start", 0);
    }
}


/* UID SEARCH UID last+1:* in the mailbox, its UIDVALIDITY on the way */

static ngx_int_t
orbit_email_search(orbit_email_poll_t *p)
{
    u_char  *cmd;

    if (p->req == NULL) {
        p->req = orbit_http_req_create(p->job->pool);
        if (p->req == NULL) {
            return NGX_ERROR;
        }
    }

    cmd = ngx_pnalloc(p->job->pool, sizeof("UID SEARCH UID :*")
                                    + NGX_INT64_LEN);
    if (cmd == NULL) {
        return NGX_ERROR;
    }

    orbit_email_imap_req(p->req, &p->conf);
    p->req->method.data = cmd;
    p->req->method.len = ngx_sprintf(cmd, "UID SEARCH UID %uL:*",
                                     p->last + 1)
                         - cmd;
    p->req->handler = orbit_email_searched;
    p->req->data = p;

    return orbit_http_send(ngx_http_orbit_http_client(), p->req);
}


static void
orbit_email_searched(orbit_http_req_t *req)
{
    orbit_email_poll_t  *p = req->data;

    u_char      *s, *end, *eol, *n;
    uint64_t     uid, *u;
    ngx_uint_t   i;

    if (req->error.len) {
        orbit_email_poll_failed(p, req);
        return;
    }

    s = req->reply.len ? ngx_strlcasestrn(req->reply.data,
                                          req->reply.data + req->reply.len,
                                          (u_char *) "[UIDVALIDITY ", 13 - 1)
                       : NULL;

    if (s == NULL) {
        ngx_log_error(NGX_LOG_WARN, p->job->log, 0,
                      "email: %s: no UIDVALIDITY in \"%V\"", p->account,
                      &req->reply);
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "IMAP: the mailbox has no "
                             "UIDVALIDITY", 0);
        return;
    }

    end = req->reply.data + req->reply.len;
    s += 13;

    for (n = s; n < end && *n >= '0' && *n <= '9'; n++) { /* void */ }

    p->uidvalidity = ngx_atoof(s, n - s);

    if (p->uidvalidity == (uint64_t) NGX_ERROR) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "IMAP: a bad UIDVALIDITY",
                             0);
        return;
    }

    if (p->cursor && p->uidvalidity != p->validity && !p->researched) {
        /* the mailbox's UIDs were renumbered: from the start again */
        ngx_log_error(NGX_LOG_NOTICE, p->job->log, 0,
                      "email: UIDVALIDITY of %s changed, %uL -> %uL",
                      p->account, p->validity, p->uidvalidity);
        p->researched = 1;
        p->last = 0;
        p->seen = 0;

        if (orbit_email_search(p) != NGX_OK) {
            orbit_email_poll_end(p, ORBIT_JOB_RETRY, "the search could not "
                                 "start", 0);
        }

        return;
    }

    if (p->uidvalidity != p->validity) {
        p->last = 0;
        p->seen = 0;
    }

    /* "* SEARCH 3 4 5": "last+1:*" names the newest mail even when it
     * is older than last+1, so only what is above last counts */

    s = req->response.data;
    end = s + req->response.len;

    for (/* void */; s < end; s = eol + 1) {
        eol = ngx_strlchr(s, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        if (eol - s < 8 || ngx_strncasecmp(s, (u_char *) "* SEARCH", 8)
                           != 0)
        {
            continue;
        }

        for (s += 8; s < eol; s = n) {
            while (s < eol && (*s < '0' || *s > '9')) {
                s++;
            }

            for (n = s; n < eol && *n >= '0' && *n <= '9'; n++) {
                /* void */
            }

            if (n == s) {
                break;
            }

            uid = ngx_atoof(s, n - s);

            if (uid == (uint64_t) NGX_ERROR || uid <= p->last) {
                continue;
            }

            u = ngx_array_push(&p->uids);
            if (u == NULL) {
                orbit_email_poll_end(p, ORBIT_JOB_RETRY, "out of memory", 0);
                return;
            }

            *u = uid;
        }
    }

    ngx_qsort(p->uids.elts, p->uids.nelts, sizeof(uint64_t),
              orbit_email_uid_cmp);

    if (p->uids.nelts > ORBIT_EMAIL_BATCH) {
        p->uids.nelts = ORBIT_EMAIL_BATCH;
        p->more = 1;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, p->job->log, 0,
                   "email: %s: %ui new after %uL", p->account,
                   p->uids.nelts, p->last);

    if (p->uids.nelts == 0 && p->cursor && p->uidvalidity == p->validity) {
        orbit_email_poll_end(p, ORBIT_JOB_REPEAT, NULL, 0);
        return;
    }

    p->items = json_array();
    if (p->items == NULL) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "out of memory", 0);
        return;
    }

    for (i = 0; i < p->uids.nelts; i++) {
        /* the duplicates a sloppy server may send */
        u = p->uids.elts;

        if (i && u[i] == u[i - 1]) {
            u[i - 1] = 0;
        }
    }

    orbit_email_fetch(p);
}


/* the next mail, or the store once all are in (or the time is up) */

static void
orbit_email_fetch(orbit_email_poll_t *p)
{
    u_char    *url;
    uint64_t  *u;

    u = p->uids.elts;

    while (p->next < p->uids.nelts && u[p->next] == 0) {
        p->next++;
    }

    if (p->next == p->uids.nelts) {
        orbit_email_store(p);
        return;
    }

    if (ngx_current_msec - p->start > ORBIT_EMAIL_RUN_MAX) {
        p->more = 1;
        orbit_email_store(p);
        return;
    }

    url = ngx_pnalloc(p->job->pool, p->conf.imap.len
                      + sizeof(";UIDVALIDITY=;UID=") + 2 * NGX_INT64_LEN);
    if (url == NULL) {
        ngx_str_set(&p->error, "out of memory");
        orbit_email_store(p);
        return;
    }

    orbit_email_imap_req(p->req, &p->conf);
    p->req->url.data = url;
    p->req->url.len = ngx_sprintf(url, "%V;UIDVALIDITY=%uL;UID=%uL",
                                  &p->conf.imap, p->uidvalidity,
                                  u[p->next])
                      - url;
    p->req->max_response = ORBIT_EMAIL_MAIL_MAX;
    p->req->handler = orbit_email_fetched;
    p->req->data = p;

    if (orbit_http_send(ngx_http_orbit_http_client(), p->req) != NGX_OK) {
        p->error = p->req->error;
        orbit_email_store(p);
    }
}


static void
orbit_email_fetched(orbit_http_req_t *req)
{
    orbit_email_poll_t  *p = req->data;

    uint64_t  uid;

    uid = ((uint64_t *) p->uids.elts)[p->next];

    if (req->error.len == 0) {
        if (orbit_email_item(p, req->response.data, req->response.len)
            != NGX_OK)
        {
            ngx_str_set(&p->error, "out of memory");
            orbit_email_store(p);
            return;
        }

    } else if (req->result == CURLE_REMOTE_FILE_NOT_FOUND
               || req->result == CURLE_FILESIZE_EXCEEDED
               || ngx_strncmp(req->error.data, "response too large", 18)
                  == 0)
    {
        /* expunged meanwhile, or more than we take: passed over */
        ngx_log_error(NGX_LOG_WARN, p->job->log, 0,
                      "email: %s: UID %uL passed over: %V", p->account, uid,
                      &req->error);

    } else {
        /* what came so far is stored; the rest waits for the retry */
        p->error = req->error;
        orbit_email_store(p);
        return;
    }

    if (req->response.data) {
        (void) ngx_pfree(p->job->pool, req->response.data);
        ngx_str_null(&req->response);
    }

    p->seen = uid;
    p->next++;

    orbit_email_fetch(p);
}


/* one mail as a pipeline item */

static ngx_int_t
orbit_email_item(orbit_email_poll_t *p, u_char *data, size_t len)
{
    char           hash[ORBIT_SHA256_HEX_LEN + sizeof("sha256:")];
    size_t         i;
    json_t        *item, *content, *contact, *atts, *a;
    ngx_int_t      rc;
    orbit_mime_t   m;

    if (orbit_mime_parse((const char *) data, len, &m) != 0) {
        return NGX_ERROR;
    }

    if (m.message_id == NULL) {
        /* no Message-ID: the mail's own bytes name it */
        ngx_memcpy(hash, "sha256:", 7);
        orbit_sha256_hex(hash + 7, data, len);
    }

    rc = NGX_ERROR;

    item = json_pack("{s:s, s:s, s:s, s:s, s:s}", "kind", "message",
                     "channel", "email", "account", p->account,
                     "providerMessageId", m.message_id ? m.message_id : hash,
                     "type", "text");
    contact = json_pack("{s:s}", "externalId",
                        m.from_addr ? m.from_addr : "unknown@invalid");
    content = json_pack("{s:s, s:s, s:s}", "text", m.text,
                        "subject", m.subject,
                        "from", m.from_addr ? m.from_addr : "");

    if (item == NULL || contact == NULL || content == NULL) {
        goto done;
    }

    if ((m.from_name[0]
         && json_object_set_new(contact, "name", json_string(m.from_name)))
        || (m.from_name[0]
            && json_object_set_new(content, "fromName",
                                   json_string(m.from_name)))
        || (m.to && json_object_set_new(content, "to", json_string(m.to)))
        || (m.cc && json_object_set_new(content, "cc", json_string(m.cc)))
        || (m.html && json_object_set_new(content, "html",
                                          json_string(m.html)))
        || (m.message_id && json_object_set_new(content, "messageId",
                                         json_string(m.message_id)))
        || (m.in_reply_to
            && (json_object_set_new(content, "inReplyTo",
                                    json_string(m.in_reply_to))
                || json_object_set_new(item, "replyTo",
                                       json_string(m.in_reply_to))))
        || (m.references && json_object_set_new(content, "references",
                                         json_string(m.references)))
        || (m.date && json_object_set_new(item, "timestamp",
                                          json_integer(m.date))))
    {
        goto done;
    }

    if (m.natts) {
        atts = json_array();
        if (atts == NULL || json_object_set_new(content, "attachments", atts))
        {
            goto done;
        }

        for (i = 0; i < m.natts; i++) {
            a = json_pack("{s:s, s:s, s:I}", "name", m.atts[i].name,
                          "type", m.atts[i].type,
                          "size", (json_int_t) m.atts[i].size);

            if (a == NULL || json_array_append_new(atts, a) != 0) {
                goto done;
            }
        }
    }

    if (json_object_set(item, "contact", contact) != 0
        || json_object_set(item, "content", content) != 0
        || json_array_append(p->items, item) != 0)
    {
        goto done;
    }

    rc = NGX_OK;

done:

    json_decref(item);
    json_decref(contact);
    json_decref(content);
    orbit_mime_free(&m);

    return rc;
}


/* the items and the cursor, one statement */

static void
orbit_email_store(orbit_email_poll_t *p)
{
    u_char       *n;
    const char  **v;

    v = ngx_palloc(p->job->pool, 3 * sizeof(char *));
    n = ngx_pnalloc(p->job->pool, 2 * (NGX_INT64_LEN + 1));

    if (v == NULL || n == NULL) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "out of memory", 0);
        return;
    }

    v[0] = p->connection;
    v[1] = (char *) n;
    n = ngx_sprintf(n, "%uL%Z", p->uidvalidity);
    v[2] = (char *) n;
    (void) ngx_sprintf(n, "%uL%Z", p->seen);

    p->store.pool = p->job->pool;
    p->store.log = p->job->log;
    p->store.items = p->items;
    p->store.sql = orbit_email_inbound_sql;
    p->store.nparams = 3;
    p->store.values = v;
    p->store.handler = orbit_email_stored;
    p->store.data = p;

    if (orbit_pipeline_store(&p->store) != NGX_OK) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "the mail could not be "
                             "stored", 0);
    }
}


static void
orbit_email_stored(orbit_pipeline_store_t *ps)
{
    orbit_email_poll_t  *p = ps->data;

    char  *why;

    if (ps->rc != NGX_OK) {
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, "the mail could not be "
                             "stored", 0);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, p->job->log, 0,
                  "email: %s: %ui stored, %ui duplicates, up to UID %uL",
                  p->account, ps->stored, ps->duplicates, p->seen);

    if (p->error.len) {
        why = orbit_api_strdup_n(p->job->pool, p->error.data, p->error.len);
        orbit_email_poll_end(p, ORBIT_JOB_RETRY, why ? why : "IMAP failed",
                             0);
        return;
    }

    orbit_email_poll_end(p, ORBIT_JOB_REPEAT, NULL, 0);
}


/* the search or a login failed: refused for good, or later */

static void
orbit_email_poll_failed(orbit_email_poll_t *p, orbit_http_req_t *req)
{
    char  *no, *why;

    no = orbit_email_refusal(p->job->pool, &req->reply);

    if (no || req->result == CURLE_LOGIN_DENIED) {
        orbit_email_poll_end(p, ORBIT_JOB_FAIL,
                             no ? no : "IMAP: login refused", 401);
        return;
    }

    why = orbit_api_strdup_n(p->job->pool, req->error.data, req->error.len);

    orbit_email_poll_end(p, ORBIT_JOB_RETRY, why ? why : "IMAP failed", 0);
}


/*
 * The run's outcome: REPEAT after the poll interval (at once when more
 * mail waits); a poll that fails for good marks the connection's setup
 * failed with the reason, committed with it.
 */

static void
orbit_email_poll_end(orbit_email_poll_t *p, orbit_job_status_e status,
    const char *error, ngx_int_t code)
{
    char                 *e;
    json_t               *j;
    ngx_uint_t            level;
    const char          **v;
    orbit_job_outcome_t   done;

    ngx_memzero(&done, sizeof(orbit_job_outcome_t));
    done.status = status;

    if (status == ORBIT_JOB_REPEAT) {
        done.delay = p->more ? 1000 : p->conf.interval;
    }

    if (error) {
        done.error.data = (u_char *) error;
        done.error.len = ngx_strlen(error);

        level = (status == ORBIT_JOB_FAIL) ? NGX_LOG_ERR : NGX_LOG_WARN;
        ngx_log_error(level, p->job->log, 0, "email poll: %s", error);
    }

    v = ngx_palloc(p->job->pool, 2 * sizeof(char *));
    j = error ? json_pack("{s:I, s:s}", "code", (json_int_t) code, "title",
                          error)
              : NULL;
    e = j ? json_dumps(j, JSON_COMPACT) : NULL;

    if (v && e && p->connection) {
        v[0] = p->connection;
        v[1] = orbit_api_strdup(p->job->pool, e);

        if (v[1] && (status == ORBIT_JOB_FAIL || status == ORBIT_JOB_RETRY))
        {
            done.effect = orbit_email_poll_failed_sql;
            done.nparams = 2;
            done.values = v;
        }
    }

    free(e);
    json_decref(j);
    json_decref(p->items);
    p->items = NULL;

    orbit_job_finish(p->job, &done);
}


/* ------------------------------------------------------------ helpers */

/*
 * The connection's servers and credentials, checked; strings copied to
 * pool.  An error text, or NULL.
 */

static const char *
orbit_email_conf(ngx_pool_t *pool, json_t *config, json_t *credentials,
    orbit_email_conf_t *conf)
{
    json_t      *j;
    ngx_str_t   *s;
    const char  *err, *v;
    ngx_uint_t   i;
    json_int_t   secs;

    ngx_memzero(conf, sizeof(orbit_email_conf_t));

    err = orbit_email_url(pool, config, "smtpUrl", "smtp", &conf->smtp);
    if (err) {
        return err;
    }

    err = orbit_email_url(pool, config, "imapUrl", "imap", &conf->imap);
    if (err) {
        return err;
    }

    for (i = 0; i < 2; i++) {
        v = json_string_value(json_object_get(config,
                                              i ? "subject" : "fromName"));

        if (v && ngx_strlen(v) > 200) {
            return i ? "config.subject is too long"
                     : "config.fromName is too long";
        }

        if (v && v[0]) {
            v = orbit_api_strdup(pool, v);
            if (v == NULL) {
                return "out of memory";
            }
        }

        if (i) {
            conf->subject = v;

        } else {
            conf->from_name = v;
        }
    }

    j = json_object_get(config, "pollInterval");
    secs = ORBIT_EMAIL_POLL_DEFAULT;

    if (j) {
        if (!json_is_integer(j) || json_integer_value(j) > 86400) {
            return "config.pollInterval must be a number of seconds";
        }

        secs = json_integer_value(j);

        if (secs < ORBIT_EMAIL_POLL_MIN) {
            return "config.pollInterval must be at least 10 seconds";
        }
    }

    conf->interval = (ngx_msec_t) secs * 1000;

    for (i = 0; i < 2; i++) {
        s = i ? &conf->password : &conf->username;
        v = json_string_value(json_object_get(credentials,
                                              i ? "password" : "username"));

        if (v == NULL) {
            continue;
        }

        s->len = ngx_strlen(v);
        s->data = (u_char *) orbit_api_strdup(pool, v);

        if (s->data == NULL) {
            return "out of memory";
        }
    }

    return NULL;
}


/*
 * config[key]: scheme://host[:port][/path] or its "s" twin, with nothing
 * curl would read as options or another request; the IMAP mailbox is
 * INBOX unless the path names one.
 */

static const char *
orbit_email_url(ngx_pool_t *pool, json_t *config, const char *key,
    const char *scheme, ngx_str_t *url)
{
    u_char      *p;
    size_t       n, k;
    const char  *v, *host, *path;

    v = json_string_value(json_object_get(config, key));

    if (v == NULL) {
        if (json_object_get(config, key)) {
            return (scheme[0] == 's') ? "config.smtpUrl must be a string"
                                      : "config.imapUrl must be a string";
        }

        return NULL;
    }

    n = ngx_strlen(v);
    k = ngx_strlen(scheme);

    if (ngx_strncasecmp((u_char *) v, (u_char *) scheme, k) != 0) {
        goto bad;
    }

    host = v + k;

    if (*host == 's' || *host == 'S') {
        host++;
    }

    if (ngx_strncmp(host, "://", 3) != 0) {
        goto bad;
    }

    host += 3;

    if (n > 500 || *host == '\0' || *host == '/' || *host == ':') {
        goto bad;
    }

    for (p = (u_char *) host; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || *p == ';' || *p == '?' || *p == '#'
            || *p == '@' || *p == '\\')
        {
            goto bad;
        }
    }

    path = ngx_strchr(host, '/');

    if (scheme[0] == 'i' && (path == NULL || path[1] == '\0')) {
        /* the mailbox: INBOX */
        url->len = (path ? (size_t) (path - v) : n) + sizeof("/INBOX") - 1;
        url->data = ngx_pnalloc(pool, url->len + 1);
        if (url->data == NULL) {
            return "out of memory";
        }

        (void) ngx_sprintf(url->data, "%*s/INBOX%Z",
                           path ? (size_t) (path - v) : n, v);
        return NULL;
    }

    url->len = n;
    url->data = (u_char *) orbit_api_strdup(pool, v);

    return url->data ? NULL : "out of memory";

bad:

    return (scheme[0] == 's')
           ? "config.smtpUrl must be smtp://host:port or smtps://host:port"
           : "config.imapUrl must be imap://host:port/MAILBOX or "
             "imaps://host:port/MAILBOX";
}


static void
orbit_email_imap_req(orbit_http_req_t *req, orbit_email_conf_t *conf)
{
    req->url = conf->imap;
    req->protocols = "imap,imaps";
    req->username = conf->username;
    req->password = conf->password;
    req->timeout = ORBIT_EMAIL_TIMEOUT;
    ngx_str_null(&req->method);

    /*
     * Every IMAP transfer logs in on a connection of its own: one that
     * curl kept has its mailbox selected already, so it neither says its
     * UIDVALIDITY again nor sees mail that came since.
     */

    req->fresh = 1;
}


/* "Re: " once before the customer's subject */

static char *
orbit_email_subject(ngx_pool_t *pool, const char *subject)
{
    u_char  *s;

    for ( ;; ) {
        while (*subject == ' ' || *subject == '\t') {
            subject++;
        }

        if (ngx_strncasecmp((u_char *) subject, (u_char *) "re:", 3) != 0) {
            break;
        }

        subject += 3;
    }

    s = ngx_pnalloc(pool, ngx_strlen(subject) + sizeof("Re: "));
    if (s == NULL) {
        return NULL;
    }

    (void) ngx_sprintf(s, "Re: %s%Z", subject);

    return (char *) s;
}


/*
 * The SMTP server's last refusal (a 4xx or 5xx line) as printable text,
 * its code in *code; NULL when there is none.
 */

static char *
orbit_email_reply(ngx_pool_t *pool, ngx_str_t *reply, ngx_uint_t *code)
{
    u_char  *s, *end, *eol, *line, *lend, *t;

    line = NULL;
    lend = NULL;
    *code = 0;

    s = reply->data;
    end = s + reply->len;

    for (/* void */; s && s < end; s = eol + 1) {
        eol = ngx_strlchr(s, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        if (eol - s >= 3 && (s[0] == '4' || s[0] == '5')
            && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9'
            && (eol - s == 3 || s[3] == ' ' || s[3] == '-' || s[3] == '\r'))
        {
            line = s;
            lend = eol;
            *code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
        }
    }

    if (line == NULL) {
        return NULL;
    }

    while (lend > line && (lend[-1] == '\r' || lend[-1] == ' ')) {
        lend--;
    }

    s = (u_char *) orbit_api_strdup_n(pool, line, lend - line);

    /* printable ASCII only: it goes into JSON */

    for (t = s; t && *t; t++) {
        if (*t < 0x20 || *t >= 0x7f) {
            *t = '?';
        }
    }

    return (char *) s;
}


/* an IMAP server's tagged NO or BAD ("A002 NO [AUTH...] ..."), or NULL */

static char *
orbit_email_refusal(ngx_pool_t *pool, ngx_str_t *reply)
{
    u_char  *s, *end, *eol, *t, *text;

    s = reply->data;
    end = s + reply->len;

    for (/* void */; s && s < end; s = eol + 1) {
        eol = ngx_strlchr(s, end, '\n');
        if (eol == NULL) {
            eol = end;
        }

        if (*s == '*' || *s == '+') {
            continue;
        }

        t = ngx_strlchr(s, eol, ' ');

        if (t == NULL || eol - t < 3
            || !(ngx_strncmp(t, " NO", 3) == 0
                 || ngx_strncmp(t, " BAD", 4) == 0))
        {
            continue;
        }

        text = ngx_pnalloc(pool, sizeof("IMAP:") + (eol - t));
        if (text == NULL) {
            return NULL;
        }

        t = ngx_cpymem(text, "IMAP:", 5);
        t = ngx_cpymem(t, ngx_strlchr(s, eol, ' '),
                       eol - ngx_strlchr(s, eol, ' '));

        while (t > text && (t[-1] == '\r' || t[-1] == ' ')) {
            t--;
        }

        *t = '\0';

        for (t = text; *t; t++) {
            if (*t < 0x20 || *t >= 0x7f) {
                *t = '?';
            }
        }

        return (char *) text;
    }

    return NULL;
}


static int
orbit_email_uid_cmp(const void *a, const void *b)
{
    uint64_t  x = *(const uint64_t *) a;
    uint64_t  y = *(const uint64_t *) b;

    return (x > y) - (x < y);
}
