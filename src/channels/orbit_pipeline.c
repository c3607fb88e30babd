/*
 * OrbitDesk channels: the inbound pipeline every channel shares.
 *
 *   GET  /api/v1/channels/{name}/webhook    the provider's verification
 *   POST /api/v1/channels/{name}/webhook    signed events
 *   (and /api/v1/whatsapp/webhook, the seed's path for WhatsApp)
 *
 * POST: the adapter verifies the raw body, normalizes it into items, and
 * one statement, SELECT orbit_inbound($1), routes every item to its tenant
 * and stores it; the 200 goes out after the commit (ARCHITECTURE rule 4).
 * Then each stored message or status is published once, to its
 * conversation's room and its tenant's room, heard there by the tenant's
 * staff and the conversation's assignee, and the jobs enqueued with a
 * message are woken in this worker (they come without NOTIFY, 016).
 *
 * Group commit: a worker has at most ORBIT_PIPELINE_IN_FLIGHT statements
 * running.  Webhooks that come meanwhile wait, and the next statement
 * takes all of them (up to ORBIT_PIPELINE_BATCH_MAX): under load one
 * commit stores many webhooks, and a lone webhook waits for nobody.  Each
 * still gets its 200 only once the statement that holds it committed; a
 * client gone meanwhile leaves its webhook stored (the provider's retry
 * is then a duplicate).  When a statement is back the next one is sent
 * before its webhooks are answered, so that PostgreSQL works meanwhile.
 *
 * One statement in flight, measured (tools/orbit bench, inbound, one
 * worker, 16 connections): 2,600-3,400 webhooks/s, against 2,000-2,300
 * with two and less with more.  A statement costs PostgreSQL a fixed
 * part (the plan's start, its tables' locks) and a part per message:
 * several at once make smaller batches, each paying the fixed part, and
 * contend for the same conversations' rows and the WAL.
 *
 * Jobs come in by orbit_pipeline_store() (a channel that polls: IMAP):
 * their items go through orbit_inbound() in a statement of their own,
 * which may commit the job's own change with them (the poll's cursor),
 * and are published the same way.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"
#include "channels/orbit_channel_creds.h"
#include "realtime/orbit_rooms.h"


#define ORBIT_PIPELINE_SQL        "SELECT orbit_inbound($1::jsonb)"
#define ORBIT_PIPELINE_IN_FLIGHT  1
#define ORBIT_PIPELINE_BATCH_MAX  64        /* webhooks per statement */
#define ORBIT_PIPELINE_ITEMS_MAX  1000      /* items per statement */


typedef struct {
    ngx_uint_t                   received;
    ngx_uint_t                   stored;
    ngx_uint_t                   duplicates;
    ngx_uint_t                   statuses;
    ngx_uint_t                   unknown_accounts;
    ngx_uint_t                   unknown_messages;
} orbit_pipeline_count_t;


typedef struct orbit_pipeline_slot_s  orbit_pipeline_slot_t;


/* a webhook waiting to be stored: pending, then in a batch's slot */
typedef struct {
    ngx_queue_t                  queue;        /* while pending */
    orbit_channel_in_t          *in;
    ngx_str_t                    items;        /* "[...]" */
    size_t                       nitems;
    orbit_pipeline_slot_t       *slot;         /* once batched */
    unsigned                     done:1;       /* answered */
} orbit_pipeline_wait_t;


/* a webhook's place in its statement: its items, whether or not its
 * client is still there to be answered */
struct orbit_pipeline_slot_s {
    orbit_pipeline_wait_t       *w;            /* NULL: gone */
    size_t                       nitems;
};


/* one statement of several webhooks */
typedef struct {
    ngx_pool_t                  *pool;         /* the batch's own */
    ngx_array_t                  slots;
    unsigned                     sent:1;
} orbit_pipeline_batch_t;


static ngx_int_t orbit_pipeline_challenge(orbit_channel_in_t *in);
static ngx_int_t orbit_pipeline_load(orbit_channel_in_t *in);
static void orbit_pipeline_loaded(orbit_api_req_t *ar, PGresult *res);
static ngx_int_t orbit_pipeline_take(orbit_channel_in_t *in);
static void orbit_pipeline_flush(void);
static void orbit_pipeline_batch_done(orbit_pg_query_t *q, PGresult *res);
static void orbit_pipeline_gone(void *data);
static void orbit_pipeline_results(json_t *results, size_t first, size_t n,
    orbit_pipeline_count_t *c, json_t *kinds, ngx_log_t *log);
static void orbit_pipeline_publish(ngx_log_t *log, json_t *result);
static void orbit_pipeline_wake(json_t *kinds);
static void orbit_pipeline_store_done(orbit_pg_query_t *q, PGresult *res);
static ngx_int_t orbit_pipeline_answer(orbit_api_req_t *ar,
    orbit_pipeline_count_t *n);
static void orbit_pipeline_json_free(void *data);


static ngx_queue_t  orbit_pipeline_pending;    /* of orbit_pipeline_wait_t */
static ngx_uint_t   orbit_pipeline_in_flight;


ngx_int_t
orbit_channel_webhook(orbit_api_req_t *ar)
{
    orbit_slice_t          *name;
    const orbit_channel_t  *ch;

    name = &ar->match.params[0];

    ch = orbit_channel_find((u_char *) name->data, name->len);

    /* a keyed channel's webhook names its account, the others' do not */

    if (ch == NULL
        || ((ch->flags & ORBIT_CHANNEL_KEYED) != 0)
           != (ar->match.nparams == 2))
    {
        (void) ngx_http_discard_request_body(ar->r);
        return orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                    "There is no such channel");
    }

    return orbit_pipeline_start(ar, ch);
}


ngx_int_t
orbit_channel_whatsapp_webhook(orbit_api_req_t *ar)
{
    return orbit_pipeline_start(ar, &orbit_channel_whatsapp);
}


ngx_int_t
orbit_pipeline_start(orbit_api_req_t *ar, const orbit_channel_t *ch)
{
    orbit_channel_in_t  *in;

    in = ngx_pcalloc(ar->r->pool, sizeof(orbit_channel_in_t));
    if (in == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    in->ar = ar;
    in->channel = ch;
    ar->data = in;

    if (ar->r->method == NGX_HTTP_GET) {
        return orbit_pipeline_challenge(in);
    }

    if (orbit_api_raw_body(ar, &in->body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ch->flags & ORBIT_CHANNEL_KEYED) {
        return orbit_pipeline_load(in);
    }

    return orbit_pipeline_take(in);
}


/*
 * A keyed channel: its connection's credentials first (one query), which
 * verify the request.  Unknown or disabled: 404.
 */

static ngx_int_t
orbit_pipeline_load(orbit_channel_in_t *in)
{
    const char  **v;

    static const char  sql[] =
        "SELECT tenant_id, id, credentials FROM channel_connections"
        " WHERE channel = $1 AND account_id = $2 AND status = 'active'";

    v = ngx_palloc(in->ar->r->pool, 2 * sizeof(const char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    in->account = orbit_api_strdup_n(in->ar->r->pool,
                      (u_char *) in->ar->match.params[1].data,
                      in->ar->match.params[1].len);

    if (in->account == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    v[0] = in->channel->channel;
    v[1] = in->account;

    return orbit_api_query(in->ar, sql, 2, v, orbit_pipeline_loaded);
}


static void
orbit_pipeline_loaded(orbit_api_req_t *ar, PGresult *res)
{
    orbit_channel_in_t  *in = ar->data;

    ngx_str_t            tenant, conn;
    ngx_pool_cleanup_t  *cln;

    if (PQntuples(res) != 1) {
        orbit_api_finish(ar, orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                 "No connected account matches this "
                                 "webhook"));
        return;
    }

    tenant.data = (u_char *) PQgetvalue(res, 0, 0);
    tenant.len = PQgetlength(res, 0, 0);
    conn.data = (u_char *) PQgetvalue(res, 0, 1);
    conn.len = PQgetlength(res, 0, 1);

    cln = ngx_pool_cleanup_add(ar->r->pool, 0);
    if (cln == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    in->credentials = orbit_channel_creds_open(ar->r->connection->log,
                          (u_char *) PQgetvalue(res, 0, 2),
                          PQgetlength(res, 0, 2), &tenant, &conn);

    if (in->credentials == NULL) {
        orbit_api_finish(ar, orbit_api_send_error(ar,
                                 NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "This connection's credentials cannot be "
                                 "read: enter them again"));
        return;
    }

    cln->handler = orbit_pipeline_json_free;
    cln->data = in->credentials;

    /* NGX_DONE: the pipeline holds the request on; ours is let go */
    orbit_api_finish(ar, orbit_pipeline_take(in));
}


/* verify, normalize, and wait for a statement */

static ngx_int_t
orbit_pipeline_take(orbit_channel_in_t *in)
{
    char                    *items;
    ngx_int_t                rc;
    ngx_pool_cleanup_t      *cln;
    orbit_api_req_t         *ar;
    orbit_pipeline_wait_t   *w;
    orbit_pipeline_count_t   none;
    const orbit_channel_t   *ch;

    ar = in->ar;
    ch = in->channel;

    /* the signature first: nothing parses what the provider did not sign */

    rc = ch->verify(in);
    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ar->r->connection->log, 0,
                      "%s webhook refused: %s", ch->name, in->error);
        return orbit_api_send_error(ar, rc, in->error);
    }

    cln = ngx_pool_cleanup_add(ar->r->pool, 0);
    in->items = json_array();

    if (cln == NULL || in->items == NULL) {
        json_decref(in->items);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = orbit_pipeline_json_free;
    cln->data = in->items;

    rc = ch->normalize(in);
    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, ar->r->connection->log, 0,
                      "%s webhook refused: %s", ch->name, in->error);
        return orbit_api_send_error(ar, rc, in->error);
    }

    if (json_array_size(in->items) == 0) {
        /* a change of no interest (a template's review, say): taken */
        ngx_memzero(&none, sizeof(orbit_pipeline_count_t));
        return orbit_pipeline_answer(ar, &none);
    }

    /* the items wait for the worker's next statement */

    items = json_dumps(in->items, JSON_COMPACT);
    if (items == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(ar->r->pool, sizeof(orbit_pipeline_wait_t));
    if (cln == NULL) {
        free(items);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    w = cln->data;
    ngx_memzero(w, sizeof(orbit_pipeline_wait_t));
    w->in = in;
    w->nitems = json_array_size(in->items);
    w->items.len = ngx_strlen(items);
    w->items.data = (u_char *) orbit_api_strdup(ar->r->pool, items);
    free(items);

    if (w->items.data == NULL) {
        w->done = 1;
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = orbit_pipeline_gone;

    if (orbit_pipeline_pending.next == NULL) {
        ngx_queue_init(&orbit_pipeline_pending);
    }

    ngx_queue_insert_tail(&orbit_pipeline_pending, &w->queue);
    orbit_api_hold(ar);

    orbit_pipeline_flush();

    return NGX_DONE;
}


/* as many statements as may run, each with every webhook that waits */

static void
orbit_pipeline_flush(void)
{
    u_char                  *p;
    size_t                   len, nitems;
    ngx_uint_t               i;
    ngx_pool_t              *pool;
    ngx_queue_t             *q;
    const char             **values;
    orbit_pg_pool_t         *pg;
    orbit_pg_query_t        *pq;
    orbit_pipeline_slot_t   *slot;
    orbit_pipeline_wait_t   *w;
    orbit_pipeline_batch_t  *b;

    while (orbit_pipeline_in_flight < ORBIT_PIPELINE_IN_FLIGHT
           && !ngx_queue_empty(&orbit_pipeline_pending))
    {
        pool = ngx_create_pool(4096, ngx_cycle->log);
        if (pool == NULL) {
            return;
        }

        b = ngx_pcalloc(pool, sizeof(orbit_pipeline_batch_t));
        values = ngx_palloc(pool, sizeof(const char *));
        pq = orbit_pg_query_create(pool);

        if (b == NULL || values == NULL || pq == NULL
            || ngx_array_init(&b->slots, pool, 16,
                              sizeof(orbit_pipeline_slot_t))
               != NGX_OK)
        {
            ngx_destroy_pool(pool);
            return;
        }

        b->pool = pool;
        pq->handler = orbit_pipeline_batch_done;
        pq->data = b;

        /* the waiting webhooks, in order, while they fit */

        len = sizeof("[]");
        nitems = 0;

        while (!ngx_queue_empty(&orbit_pipeline_pending)
               && b->slots.nelts < ORBIT_PIPELINE_BATCH_MAX)
        {
            q = ngx_queue_head(&orbit_pipeline_pending);
            w = ngx_queue_data(q, orbit_pipeline_wait_t, queue);

            if (b->slots.nelts
                && nitems + w->nitems > ORBIT_PIPELINE_ITEMS_MAX)
            {
                break;
            }

            slot = ngx_array_push(&b->slots);
            if (slot == NULL) {
                break;
            }

            ngx_queue_remove(q);
            slot->w = w;
            slot->nitems = w->nitems;
            w->slot = slot;

            len += w->items.len - 2 + 1;
            nitems += w->nitems;
        }

        /* "[a,b]" + "[c]" -> "[a,b,c]" */

        p = ngx_pnalloc(pool, len);
        if (p == NULL) {
            orbit_pipeline_batch_done(pq, NULL);
            return;
        }

        values[0] = (char *) p;
        *p++ = '[';

        slot = b->slots.elts;

        for (i = 0; i < b->slots.nelts; i++) {
            if (i) {
                *p++ = ',';
            }

            p = ngx_cpymem(p, slot[i].w->items.data + 1,
                           slot[i].w->items.len - 2);
        }

        *p++ = ']';
        *p = '\0';

        pq->sql = ORBIT_PIPELINE_SQL;
        pq->nparams = 1;
        pq->values = values;
        pq->prepare = 1;

        pg = ngx_http_orbit_pg();

        if (pg == NULL || orbit_pg_query_send(pg, pq) != NGX_OK) {
            /* not sent: its webhooks are told why */
            orbit_pipeline_batch_done(pq, NULL);
            continue;
        }

        b->sent = 1;
        orbit_pipeline_in_flight++;
    }
}


/* a statement is back: each of its webhooks gets its results, or why not */

static void
orbit_pipeline_batch_done(orbit_pg_query_t *q, PGresult *res)
{
    orbit_pipeline_batch_t  *b = q->data;

    size_t                  first;
    json_t                 *results, *kinds;
    ngx_int_t               rc;
    ngx_uint_t              i, stored;
    ngx_log_t              *log;
    orbit_api_req_t        *ar;
    orbit_pipeline_count_t  n;
    orbit_pipeline_slot_t  *slot;
    orbit_pipeline_wait_t  *w;

    /* the next statement first: PostgreSQL stores the webhooks that
     * waited while this one's are answered and published */

    if (b->sent) {
        orbit_pipeline_in_flight--;
        orbit_pipeline_flush();
    }

    results = NULL;

    if (res && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) == 1)
    {
        results = json_loadb(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0),
                             0, NULL);
    }

    kinds = json_array();
    first = 0;
    slot = b->slots.elts;

    for (i = 0; i < b->slots.nelts; first += slot[i].nitems, i++) {
        w = slot[i].w;
        log = w ? w->in->ar->r->connection->log : ngx_cycle->log;

        stored = json_is_array(results)
                 && first + slot[i].nitems <= json_array_size(results);

        if (stored) {
            /* counted and published, also when its client went */
            orbit_pipeline_results(results, first, slot[i].nitems, &n,
                                   kinds, log);
        }

        if (w == NULL) {
            continue;
        }

        w->done = 1;
        ar = w->in->ar;

        if (stored) {
            orbit_api_finish(ar, orbit_pipeline_answer(ar, &n));
            continue;
        }

        if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                          "%s webhook: orbit_inbound() answered no "
                          "result for it", w->in->channel->name);
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            rc = orbit_api_query_failed(ar, q, res);
        }

        orbit_api_finish(ar, rc);
    }

    orbit_pipeline_wake(kinds);

    json_decref(kinds);
    json_decref(results);
    ngx_destroy_pool(b->pool);
}


/* a webhook's request goes: out of its queue or its slot */

static void
orbit_pipeline_gone(void *data)
{
    orbit_pipeline_wait_t  *w = data;

    if (w->done) {
        return;
    }

    if (w->slot) {
        w->slot->w = NULL;

    } else {
        ngx_queue_remove(&w->queue);
    }

    w->done = 1;
}


/* Meta's GET: hub.mode=subscribe, hub.verify_token, hub.challenge */

static ngx_int_t
orbit_pipeline_challenge(orbit_channel_in_t *in)
{
    ngx_int_t   rc;
    ngx_str_t   reply;

    static ngx_str_t  text = ngx_string("text/plain");

    if (in->channel->challenge == NULL) {
        return orbit_api_send_error(in->ar, NGX_HTTP_NOT_FOUND,
                                    "This channel has no verification "
                                    "request");
    }

    rc = in->channel->challenge(in, &reply);
    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, in->ar->r->connection->log, 0,
                      "%s webhook verification refused: %s",
                      in->channel->name, in->error);
        return orbit_api_send_error(in->ar, rc, in->error);
    }

    return orbit_api_send(in->ar, NGX_HTTP_OK, &text, reply.data, reply.len);
}


/*
 * n results of orbit_inbound() from first: counted, and published; the
 * kinds of the jobs that came with the messages added to kinds, once.
 */

static void
orbit_pipeline_results(json_t *results, size_t first, size_t n,
    orbit_pipeline_count_t *c, json_t *kinds, ngx_log_t *log)
{
    size_t       i, j, k;
    json_t      *r, *jobs, *kind;
    const char  *reason, *event;

    ngx_memzero(c, sizeof(orbit_pipeline_count_t));
    c->received = n;

    for (i = first; i < first + n; i++) {
        r = json_array_get(results, i);

        if (!json_is_true(json_object_get(r, "ok"))) {
            reason = json_string_value(json_object_get(r, "reason"));

            if (reason && ngx_strcmp(reason, "unknown_account") == 0) {
                c->unknown_accounts++;

            } else {
                c->unknown_messages++;
            }

            continue;
        }

        if (json_is_true(json_object_get(r, "duplicate"))) {
            c->duplicates++;
            continue;
        }

        if (json_object_get(r, "stale")) {
            continue;
        }

        event = json_string_value(json_object_get(r, "event"));

        if (event && ngx_strcmp(event, "message_status") == 0) {
            c->statuses++;

        } else {
            c->stored++;
        }

        orbit_pipeline_publish(log, r);

        jobs = json_object_get(r, "jobs");

        for (j = 0; j < json_array_size(jobs); j++) {
            kind = json_array_get(jobs, j);

            for (k = 0; k < json_array_size(kinds); k++) {
                if (json_equal(kind, json_array_get(kinds, k))) {
                    break;
                }
            }

            if (k == json_array_size(kinds) && json_is_string(kind)) {
                (void) json_array_append(kinds, kind);
            }
        }
    }
}


/*
 * The jobs orbit_inbound() enqueued with the messages (flows' triggers,
 * media copies), committed: orbit_inbound() inserts them without NOTIFY,
 * which would serialize the pipeline's commits (016), so they are woken
 * here, each kind once (ngx_http_orbit_jobs_wake).
 */

static void
orbit_pipeline_wake(json_t *kinds)
{
    size_t       i;
    const char  *kind;

    for (i = 0; i < json_array_size(kinds); i++) {
        kind = json_string_value(json_array_get(kinds, i));

        if (kind) {
            ngx_http_orbit_jobs_wake(kind);
        }
    }
}


/*
 * One event to the conversation's room and the tenant's room: a socket in
 * both hears it once, and in the tenant's room only the staff and the
 * conversation's assignee hear it.  A watermark's "data" is an array: one
 * event per message it moved.
 */

static void
orbit_pipeline_publish(ngx_log_t *log, json_t *result)
{
    char        *data;
    size_t       i, n;
    json_t      *one;
    ngx_str_t    tenant, conversation, to, json;
    const char  *tid, *cid, *event, *audience;

    tid = json_string_value(json_object_get(result, "tenantId"));
    cid = json_string_value(json_object_get(result, "conversationId"));
    event = json_string_value(json_object_get(result, "event"));
    audience = json_string_value(json_object_get(result, "audience"));

    if (tid == NULL || cid == NULL || event == NULL
        || ngx_strlen(tid) > 40 || ngx_strlen(cid) > 40)
    {
        return;
    }

    tenant.data = (u_char *) tid;
    tenant.len = ngx_strlen(tid);
    conversation.data = (u_char *) cid;
    conversation.len = ngx_strlen(cid);
    to.data = (u_char *) (audience ? audience : "");
    to.len = ngx_strlen(to.data);

    one = json_object_get(result, "data");
    n = json_is_array(one) ? json_array_size(one) : 1;

    for (i = 0; i < n; i++) {
        data = json_dumps(json_is_array(one) ? json_array_get(one, i) : one,
                          JSON_COMPACT);
        if (data == NULL) {
            return;
        }

        json.data = (u_char *) data;
        json.len = ngx_strlen(data);

        (void) orbit_rt_inbox_event(&tenant, &conversation, &to, event,
                                    &json, log);

        free(data);
    }
}


/*
 * A job's items: one statement, ps->sql (SELECT orbit_inbound($1) when
 * NULL) with the items as $1 and ps->values as $2...; its results are
 * counted in ps and published, then ps->handler runs (ps->rc NGX_OK once
 * committed).  NGX_ERROR: not sent, and no handler call.
 */

ngx_int_t
orbit_pipeline_store(orbit_pipeline_store_t *ps)
{
    int                i;
    char              *items;
    const char       **v;
    orbit_pg_pool_t   *pg;
    orbit_pg_query_t  *q;

    pg = ngx_http_orbit_pg();
    q = orbit_pg_query_create(ps->pool);
    v = ngx_palloc(ps->pool, (ps->nparams + 1) * sizeof(const char *));

    if (pg == NULL || q == NULL || v == NULL) {
        return NGX_ERROR;
    }

    items = json_dumps(ps->items, JSON_COMPACT);
    if (items == NULL) {
        return NGX_ERROR;
    }

    v[0] = orbit_api_strdup(ps->pool, items);
    free(items);

    if (v[0] == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < ps->nparams; i++) {
        v[i + 1] = ps->values[i];
    }

    q->sql = ps->sql ? ps->sql : ORBIT_PIPELINE_SQL;
    q->nparams = ps->nparams + 1;
    q->values = v;
    q->prepare = 1;
    q->handler = orbit_pipeline_store_done;
    q->data = ps;

    return orbit_pg_query_send(pg, q);
}


static void
orbit_pipeline_store_done(orbit_pg_query_t *q, PGresult *res)
{
    orbit_pipeline_store_t  *ps = q->data;

    json_t                  *results, *kinds;
    orbit_pipeline_count_t   n;

    ps->rc = NGX_ERROR;
    results = NULL;

    if (res && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) == 1)
    {
        results = json_loadb(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0),
                             0, NULL);
    }

    if (json_is_array(results)) {
        ps->rc = NGX_OK;
        kinds = json_array();

        orbit_pipeline_results(results, 0, json_array_size(results), &n,
                               kinds, ps->log);
        orbit_pipeline_wake(kinds);
        json_decref(kinds);

        ps->stored = n.stored;
        ps->duplicates = n.duplicates;
        ps->unknown = n.unknown_accounts + n.unknown_messages;

    } else {
        ngx_log_error(NGX_LOG_ERR, ps->log, 0,
                      "pipeline: the items were not stored: %s",
                      res ? PQresultErrorMessage(res) : "no answer");
    }

    json_decref(results);

    ps->handler(ps);
}


/*
 * 200 with what became of the items; 404 when none was for an account
 * we know (the provider is told: nobody here has that number).
 */

static ngx_int_t
orbit_pipeline_answer(orbit_api_req_t *ar, orbit_pipeline_count_t *n)
{
    u_char              *buf, *p;
    size_t               len;
    orbit_channel_in_t  *in;

    if (n->received && n->unknown_accounts == n->received) {
        return orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                    "No connected account matches this "
                                    "webhook");
    }

    in = ar->data;

    if (in->reply_type.len) {
        /* the adapter's own answer (TwiML) */
        return orbit_api_send(ar, NGX_HTTP_OK, &in->reply_type,
                              in->reply.data, in->reply.len);
    }

    len = sizeof("{\"received\":,\"stored\":,\"duplicates\":,\"statuses\":,"
                 "\"unknownAccounts\":,\"unknownMessages\":}")
          + 6 * NGX_INT_T_LEN;

    buf = ngx_pnalloc(ar->r->pool, len);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(buf, "{\"received\":%ui,\"stored\":%ui,"
                    "\"duplicates\":%ui,\"statuses\":%ui,"
                    "\"unknownAccounts\":%ui,\"unknownMessages\":%ui}",
                    n->received, n->stored, n->duplicates, n->statuses,
                    n->unknown_accounts, n->unknown_messages);

    return orbit_api_send_json(ar, NGX_HTTP_OK, buf, p - buf);
}


static void
orbit_pipeline_json_free(void *data)
{
    json_decref(data);
}
