/*
 * OrbitDesk channels: the API channel, the spec's "custom channel".  An
 * outside system (a bridge to personal WhatsApp, a shop, an app of the
 * tenant's) sends its users' messages to
 *
 *   POST /api/v1/channels/api/{accountId}/webhook
 *
 * and gets our replies as signed webhooks at the connection's
 * config.webhookUrl.  Both ways the body is JSON signed with the
 * connection's credentials.secret in X-Hub-Signature-256; the wire format
 * is defined at the top of t/node/fake-api-peer.js, the suites' peer.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"


#define ORBIT_APICH_ID_MAX  256


static ngx_int_t orbit_apich_verify(orbit_channel_in_t *in);
static ngx_int_t orbit_apich_normalize(orbit_channel_in_t *in);
static ngx_int_t orbit_apich_message(orbit_channel_in_t *in, json_t *m,
    size_t i);
static ngx_int_t orbit_apich_status(orbit_channel_in_t *in, json_t *st,
    size_t i);
static ngx_int_t orbit_apich_send(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_apich_sent(orbit_channel_out_t *out);
static json_t *orbit_apich_content(const char *type, json_t *c);
static ngx_int_t orbit_apich_bad(orbit_channel_in_t *in, const char *what,
    size_t i, const char *why);


const orbit_channel_t  orbit_channel_api = {
    "api",
    "api",
    NULL,
    orbit_apich_verify,
    orbit_apich_normalize,
    orbit_apich_send,
    orbit_apich_sent,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    ORBIT_CHANNEL_KEYED,
    NULL,
};


static ngx_int_t
orbit_apich_verify(orbit_channel_in_t *in)
{
    const char  *secret;

    secret = json_string_value(json_object_get(in->credentials, "secret"));

    if (secret == NULL || secret[0] == '\0') {
        in->error = "this connection has no secret to verify with";
        return NGX_HTTP_FORBIDDEN;
    }

    return orbit_channel_hub_signature(in, secret);
}


/* {"messages": [...]?, "statuses": [...]?} */

static ngx_int_t
orbit_apich_normalize(orbit_channel_in_t *in)
{
    size_t        i;
    json_t       *body, *list, *one;
    ngx_int_t     rc;
    json_error_t  err;

    body = json_loadb((char *) in->body.data, in->body.len, 0, &err);

    if (!json_is_object(body)) {
        json_decref(body);
        in->error = "the body must be a JSON object";
        return NGX_HTTP_BAD_REQUEST;
    }

    rc = NGX_OK;

    list = json_object_get(body, "messages");

    if (list && !json_is_array(list)) {
        rc = orbit_apich_bad(in, "messages", 0, "must be an array");
    }

    json_array_foreach(list, i, one) {
        if (rc == NGX_OK) {
            rc = orbit_apich_message(in, one, i);
        }
    }

    list = json_object_get(body, "statuses");

    if (rc == NGX_OK && list && !json_is_array(list)) {
        rc = orbit_apich_bad(in, "statuses", 0, "must be an array");
    }

    json_array_foreach(list, i, one) {
        if (rc == NGX_OK) {
            rc = orbit_apich_status(in, one, i);
        }
    }

    json_decref(body);

    return rc;
}


static ngx_int_t
orbit_apich_message(orbit_channel_in_t *in, json_t *m, size_t i)
{
    json_t      *item, *from, *content, *media, *v;
    const char  *id, *who, *type, *phone, *reply;

    id = json_string_value(json_object_get(m, "id"));
    from = json_object_get(m, "from");
    who = json_string_value(json_object_get(from, "id"));
    type = json_string_value(json_object_get(m, "type"));
    phone = json_string_value(json_object_get(from, "phone"));
    reply = json_string_value(json_object_get(m, "replyTo"));

    if (id == NULL || id[0] == '\0' || ngx_strlen(id) > ORBIT_APICH_ID_MAX) {
        return orbit_apich_bad(in, "messages[].id", i, "must be an id");
    }

    if (who == NULL || who[0] == '\0' || ngx_strlen(who) > 200) {
        return orbit_apich_bad(in, "messages[].from.id", i,
                               "must be the user's id");
    }

    if (phone && !orbit_valid_e164(phone, ngx_strlen(phone))) {
        return orbit_apich_bad(in, "messages[].from.phone", i,
                               "must be E.164");
    }

    if (!json_is_integer(json_object_get(m, "timestamp"))) {
        return orbit_apich_bad(in, "messages[].timestamp", i,
                               "must be Unix seconds");
    }

    if (type == NULL) {
        return orbit_apich_bad(in, "messages[].type", i, "must be a string");
    }

    content = json_object();
    if (content == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_strcmp(type, "text") == 0) {
        v = json_object_get(m, "text");

        if (!json_is_string(v) || json_string_length(v) == 0) {
            json_decref(content);
            return orbit_apich_bad(in, "messages[].text", i,
                                   "must be a string");
        }

        json_object_set(content, "text", v);

    } else if (ngx_strcmp(type, "image") == 0
               || ngx_strcmp(type, "video") == 0
               || ngx_strcmp(type, "audio") == 0
               || ngx_strcmp(type, "document") == 0)
    {
        media = json_object_get(m, "media");
        v = json_object_get(media, "url");

        if (!json_is_string(v)
            || (ngx_strncmp(json_string_value(v), "https://", 8) != 0
                && ngx_strncmp(json_string_value(v), "http://", 7) != 0))
        {
            json_decref(content);
            return orbit_apich_bad(in, "messages[].media.url", i,
                                   "must be an http(s) URL");
        }

        json_object_set_new(content, "media",
                            json_pack("{s:O, s:O?, s:O?}", "url", v,
                                      "mimeType",
                                      json_object_get(media, "mimeType"),
                                      "filename",
                                      json_object_get(media, "filename")));

        if (json_is_string(json_object_get(media, "caption"))) {
            json_object_set(content, "caption",
                            json_object_get(media, "caption"));
        }

    } else if (ngx_strcmp(type, "location") == 0) {
        v = json_object_get(m, "location");

        if (!json_is_number(json_object_get(v, "latitude"))
            || !json_is_number(json_object_get(v, "longitude")))
        {
            json_decref(content);
            return orbit_apich_bad(in, "messages[].location", i,
                                   "must have a latitude and a longitude");
        }

        json_object_set(content, "location", v);

    } else {
        json_decref(content);
        return orbit_apich_bad(in, "messages[].type", i,
                               "must be text, image, video, audio, "
                               "document or location");
    }

    item = orbit_channel_item(in, "message", "api", in->account);
    if (item == NULL) {
        json_decref(content);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "contact", json_pack("{s:s, s:s?, s:O?}",
                        "externalId", who, "phone", phone, "name",
                        json_object_get(from, "name")));
    json_object_set_new(item, "providerMessageId", json_string(id));
    json_object_set_new(item, "type", json_string(type));
    json_object_set_new(item, "content", content);
    json_object_set(item, "timestamp", json_object_get(m, "timestamp"));

    if (reply && reply[0] && ngx_strlen(reply) <= ORBIT_APICH_ID_MAX) {
        json_object_set_new(item, "replyTo", json_string(reply));
    }

    return NGX_OK;
}


static ngx_int_t
orbit_apich_status(orbit_channel_in_t *in, json_t *st, size_t i)
{
    json_t      *item, *e;
    const char  *id, *status;

    id = json_string_value(json_object_get(st, "id"));
    status = json_string_value(json_object_get(st, "status"));

    if (id == NULL || id[0] == '\0' || ngx_strlen(id) > ORBIT_APICH_ID_MAX) {
        return orbit_apich_bad(in, "statuses[].id", i, "must be an id");
    }

    if (status == NULL
        || (ngx_strcmp(status, "sent") != 0
            && ngx_strcmp(status, "delivered") != 0
            && ngx_strcmp(status, "read") != 0
            && ngx_strcmp(status, "failed") != 0))
    {
        return orbit_apich_bad(in, "statuses[].status", i,
                               "must be sent, delivered, read or failed");
    }

    if (!json_is_integer(json_object_get(st, "timestamp"))) {
        return orbit_apich_bad(in, "statuses[].timestamp", i,
                               "must be Unix seconds");
    }

    item = orbit_channel_item(in, "status", "api", in->account);
    if (item == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "providerMessageId", json_string(id));
    json_object_set_new(item, "status", json_string(status));
    json_object_set(item, "timestamp", json_object_get(st, "timestamp"));

    e = json_object_get(st, "error");
    if (json_is_object(e)) {
        json_object_set_new(item, "error", json_pack("{s:O?, s:O?}",
                            "code", json_object_get(e, "code"),
                            "title", json_object_get(e, "title")));
    }

    return NGX_OK;
}


static ngx_int_t
orbit_apich_bad(orbit_channel_in_t *in, const char *what, size_t i,
    const char *why)
{
    u_char  *msg;
    size_t   len;

    len = ngx_strlen(what) + ngx_strlen(why) + NGX_SIZE_T_LEN + 16;
    msg = ngx_pnalloc(in->ar->r->pool, len);

    if (msg == NULL) {
        in->error = "the payload is malformed";

    } else {
        ngx_snprintf(msg, len, "%s %s (item %uz)%Z", what, why, i);
        in->error = (char *) msg;
    }

    return NGX_HTTP_BAD_REQUEST;
}


/* outbound ------------------------------------------------------------ */


static ngx_int_t
orbit_apich_send(orbit_channel_out_t *out)
{
    char        *sig;
    json_t      *m, *body, *content, *to;
    const char  *url, *secret, *type, *id;

    m = out->message;
    url = json_string_value(json_object_get(out->config, "webhookUrl"));
    secret = json_string_value(json_object_get(out->credentials, "secret"));
    type = json_string_value(json_object_get(m, "type"));
    id = json_string_value(json_object_get(m, "id"));

    if (url == NULL
        || (ngx_strncmp(url, "https://", 8) != 0
            && ngx_strncmp(url, "http://", 7) != 0))
    {
        orbit_channel_error(out, 400, "The API channel has no "
                                      "config.webhookUrl to send to");
        return NGX_DECLINED;
    }

    if (secret == NULL || secret[0] == '\0') {
        orbit_channel_error(out, 401, "The API channel has no secret");
        return NGX_DECLINED;
    }

    if (type == NULL || id == NULL || out->to == NULL) {
        orbit_channel_error(out, 400, "The message has no type, id or "
                                      "recipient");
        return NGX_DECLINED;
    }

    content = orbit_apich_content(type, json_object_get(m, "content"));
    if (content == NULL) {
        orbit_channel_error(out, 400, "The API channel does not send this "
                                      "type");
        return NGX_DECLINED;
    }

    to = json_pack("{s:s}", "id", out->to);

    if (to && out->to_phone) {
        json_object_set_new(to, "phone", json_string(out->to_phone));
    }

    body = json_pack("{s:s, s:s, s:O, s:o, s:s, s:o, s:I}",
                     "event", "message", "id", id,
                     "conversationId", json_object_get(m, "conversationId"),
                     "to", to, "type", type, "content", content,
                     "timestamp", (json_int_t) ngx_time());

    if (body == NULL) {
        return NGX_ERROR;
    }

    if (out->reply_to) {
        json_object_set_new(body, "replyTo", json_string(out->reply_to));
    }

    if (orbit_channel_body(out, body) != NGX_OK) {
        return NGX_ERROR;
    }

    out->req->url.data = (u_char *) url;
    out->req->url.len = ngx_strlen(url);
    ngx_str_set(&out->req->method, "POST");

    /* the idempotency key: a retry carries the same one */

    if (orbit_channel_sign(out, secret, &out->req->body, &sig) != NGX_OK
        || orbit_channel_header(out, "Content-Type", "application/json")
           != NGX_OK
        || orbit_channel_header(out, "X-Hub-Signature-256", sig) != NGX_OK
        || orbit_channel_header(out, "X-Orbit-Delivery", id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* our content as the peer's: flat for media, a template's parameters */

static json_t *
orbit_apich_content(const char *type, json_t *c)
{
    size_t   i, k;
    json_t  *out, *media, *tpl, *lang, *params, *comp, *p;

    if (ngx_strcmp(type, "text") == 0) {
        return json_pack("{s:O}", "text", json_object_get(c, "text"));
    }

    if (ngx_strcmp(type, "location") == 0) {
        return json_deep_copy(json_object_get(c, "location"));
    }

    if (ngx_strcmp(type, "template") == 0) {
        tpl = json_object_get(c, "template");
        lang = json_object_get(tpl, "language");
        lang = json_is_object(lang) ? json_object_get(lang, "code") : lang;
        params = json_array();

        json_array_foreach(json_object_get(tpl, "components"), i, comp) {
            json_array_foreach(json_object_get(comp, "parameters"), k, p) {
                if (json_is_string(json_object_get(p, "text"))) {
                    json_array_append(params, json_object_get(p, "text"));
                }
            }
        }

        out = json_pack("{s:O, s:O}", "name", json_object_get(tpl, "name"),
                        "language", lang);

        if (out && json_array_size(params)) {
            json_object_set(out, "parameters", params);
        }

        json_decref(params);
        return out;
    }

    if (ngx_strcmp(type, "image") == 0 || ngx_strcmp(type, "video") == 0
        || ngx_strcmp(type, "audio") == 0
        || ngx_strcmp(type, "document") == 0)
    {
        media = json_object_get(c, "media");

        out = json_pack("{s:O}", "url", json_object_get(media, "url"));
        if (out == NULL) {
            return NULL;
        }

        if (json_is_string(json_object_get(media, "mimeType"))) {
            json_object_set(out, "mimeType",
                            json_object_get(media, "mimeType"));
        }

        if (json_is_string(json_object_get(media, "filename"))) {
            json_object_set(out, "filename",
                            json_object_get(media, "filename"));
        }

        if (json_is_string(json_object_get(c, "caption"))) {
            json_object_set(out, "caption", json_object_get(c, "caption"));
        }

        return out;
    }

    return NULL;
}


/* 2xx {"id"}: sent; 5xx, 429, no answer: later; another 4xx: never */

static orbit_send_rc_e
orbit_apich_sent(orbit_channel_out_t *out)
{
    json_t      *res;
    ngx_uint_t   status;
    const char  *id, *why;

    status = out->req->status;
    res = json_loadb((char *) out->req->response.data,
                     out->req->response.len, 0, NULL);

    if (status >= 200 && status < 300) {
        id = json_string_value(json_object_get(res, "id"));
        if (id == NULL) {
            id = json_string_value(json_object_get(out->message, "id"));
        }

        if (id && orbit_channel_provider_id(out, id) != NGX_OK) {
            json_decref(res);
            return ORBIT_SEND_RETRY;
        }

        json_decref(res);
        return ORBIT_SEND_DONE;
    }

    why = json_string_value(json_object_get(res, "error"));
    orbit_channel_error(out, (ngx_int_t) status,
                        why ? why : status ? "The peer refused it"
                                           : "The peer did not answer");
    json_decref(res);

    if (status == 0 || status == 429 || status >= 500) {
        return ORBIT_SEND_RETRY;
    }

    return ORBIT_SEND_FAIL;
}
