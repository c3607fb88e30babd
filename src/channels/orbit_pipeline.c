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
 * staff and the conversation's assignee.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"
#include "realtime/orbit_rooms.h"


#define ORBIT_PIPELINE_SQL  "SELECT orbit_inbound($1::jsonb)"


typedef struct {
    ngx_uint_t                   received;
    ngx_uint_t                   stored;
    ngx_uint_t                   duplicates;
    ngx_uint_t                   statuses;
    ngx_uint_t                   unknown_accounts;
    ngx_uint_t                   unknown_messages;
} orbit_pipeline_count_t;


static ngx_int_t orbit_pipeline_start(orbit_api_req_t *ar,
    const orbit_channel_t *ch);
static ngx_int_t orbit_pipeline_challenge(orbit_channel_in_t *in);
static void orbit_pipeline_stored(orbit_api_req_t *ar, PGresult *res);
static void orbit_pipeline_publish(orbit_api_req_t *ar, json_t *result);
static ngx_int_t orbit_pipeline_answer(orbit_api_req_t *ar,
    orbit_pipeline_count_t *n);
static void orbit_pipeline_json_free(void *data);


ngx_int_t
orbit_channel_webhook(orbit_api_req_t *ar)
{
    orbit_slice_t          *name;
    const orbit_channel_t  *ch;

    name = &ar->match.params[0];

    ch = orbit_channel_find((u_char *) name->data, name->len);

    if (ch == NULL) {
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


static ngx_int_t
orbit_pipeline_start(orbit_api_req_t *ar, const orbit_channel_t *ch)
{
    char                *items;
    ngx_int_t                rc;
    const char             **values;
    ngx_pool_cleanup_t      *cln;
    orbit_channel_in_t      *in;
    orbit_pipeline_count_t   none;

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

    /* the parameter lives until the query is sent: in the request pool */

    items = json_dumps(in->items, JSON_COMPACT);
    if (items == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values = ngx_palloc(ar->r->pool, sizeof(const char *));
    if (values == NULL) {
        free(items);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[0] = orbit_api_strdup(ar->r->pool, items);
    free(items);

    if (values[0] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return orbit_api_query(ar, ORBIT_PIPELINE_SQL, 1, values,
                           orbit_pipeline_stored);
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


/* committed: count, publish, answer */

static void
orbit_pipeline_stored(orbit_api_req_t *ar, PGresult *res)
{
    size_t                   i;
    json_t                  *results, *r;
    json_error_t             err;
    orbit_channel_in_t      *in;
    orbit_pipeline_count_t   n;

    in = ar->data;

    results = json_loadb(PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0), 0,
                         &err);

    if (!json_is_array(results)) {
        ngx_log_error(NGX_LOG_ERR, ar->r->connection->log, 0,
                      "%s webhook: orbit_inbound() answered no array",
                      in->channel->name);
        json_decref(results);
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memzero(&n, sizeof(orbit_pipeline_count_t));
    n.received = json_array_size(results);

    json_array_foreach(results, i, r) {

        if (!json_is_true(json_object_get(r, "ok"))) {
            if (ngx_strcmp(json_string_value(json_object_get(r, "reason")),
                           "unknown_account") == 0)
            {
                n.unknown_accounts++;

            } else {
                n.unknown_messages++;
            }

            continue;
        }

        if (json_is_true(json_object_get(r, "duplicate"))) {
            n.duplicates++;
            continue;
        }

        if (json_object_get(r, "stale")) {
            continue;
        }

        if (ngx_strcmp(json_string_value(json_object_get(r, "event")),
                       "message_status") == 0)
        {
            n.statuses++;

        } else {
            n.stored++;
        }

        orbit_pipeline_publish(ar, r);
    }

    json_decref(results);

    orbit_api_finish(ar, orbit_pipeline_answer(ar, &n));
}


/*
 * One event to the conversation's room and the tenant's room: a socket in
 * both hears it once, and in the tenant's room only the staff and the
 * conversation's assignee hear it.
 */

static void
orbit_pipeline_publish(orbit_api_req_t *ar, json_t *result)
{
    char        *data;
    u_char      *p;
    ngx_str_t    tenant, to, json, rooms[2];
    const char  *tid, *cid, *event, *audience;
    u_char       buf[2][sizeof("conversation:") + 40];

    tid = json_string_value(json_object_get(result, "tenantId"));
    cid = json_string_value(json_object_get(result, "conversationId"));
    event = json_string_value(json_object_get(result, "event"));
    audience = json_string_value(json_object_get(result, "audience"));

    if (tid == NULL || cid == NULL || event == NULL
        || ngx_strlen(tid) > 40 || ngx_strlen(cid) > 40)
    {
        return;
    }

    data = json_dumps(json_object_get(result, "data"), JSON_COMPACT);
    if (data == NULL) {
        return;
    }

    tenant.data = (u_char *) tid;
    tenant.len = ngx_strlen(tid);

    rooms[0].data = buf[0];
    p = ngx_sprintf(buf[0], "conversation:%s", cid);
    rooms[0].len = p - buf[0];

    rooms[1].data = buf[1];
    p = ngx_sprintf(buf[1], "tenant:%s", tid);
    rooms[1].len = p - buf[1];

    to.data = (u_char *) (audience ? audience : "staff");
    to.len = ngx_strlen(to.data);

    json.data = (u_char *) data;
    json.len = ngx_strlen(data);

    (void) orbit_rt_broadcast(&tenant, rooms, 2, &to, event, &json, NULL,
                              ar->r->connection->log);

    free(data);
}


/*
 * 200 with what became of the items; 404 when none was for an account
 * we know (the provider is told: nobody here has that number).
 */

static ngx_int_t
orbit_pipeline_answer(orbit_api_req_t *ar, orbit_pipeline_count_t *n)
{
    u_char  *buf, *p;
    size_t   len;

    if (n->received && n->unknown_accounts == n->received) {
        return orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                    "No connected account matches this "
                                    "webhook");
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
