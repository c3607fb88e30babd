/*
 * OrbitDesk channels: the table of adapters.  A channel is served once it
 * is listed here.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"


static const orbit_channel_t  *orbit_channels[] = {
    &orbit_channel_whatsapp,
    &orbit_channel_livechat,
    &orbit_channel_api,
    &orbit_channel_messenger,
    &orbit_channel_instagram,
    &orbit_channel_telegram,
    &orbit_channel_twilio,
    &orbit_channel_email,
};


const orbit_channel_t *
orbit_channel_find(u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(orbit_channels) / sizeof(orbit_channels[0]); i++) {
        if (ngx_strlen(orbit_channels[i]->name) == len
            && ngx_strncmp(orbit_channels[i]->name, name, len) == 0)
        {
            return orbit_channels[i];
        }
    }

    return NULL;
}


const orbit_channel_t *
orbit_channel_for(const char *channel)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(orbit_channels) / sizeof(orbit_channels[0]); i++) {
        if (ngx_strcmp(orbit_channels[i]->channel, channel) == 0) {
            return orbit_channels[i];
        }
    }

    return NULL;
}


const char *
orbit_channel_typing_channels(void)
{
    u_char      *p;
    ngx_uint_t   i;

    static u_char  list[256];

    if (list[0]) {
        return (char *) list;
    }

    p = list;
    *p++ = '{';

    for (i = 0; i < sizeof(orbit_channels) / sizeof(orbit_channels[0]); i++) {
        if (orbit_channels[i]->typing == NULL
            || (size_t) (p - list) + ngx_strlen(orbit_channels[i]->channel)
               + 3 > sizeof(list))
        {
            continue;
        }

        p = ngx_sprintf(p, "%s%s", p - list > 1 ? "," : "",
                        orbit_channels[i]->channel);
    }

    *p++ = '}';
    *p = '\0';

    return (char *) list;
}


json_t *
orbit_channel_item(orbit_channel_in_t *in, const char *kind,
    const char *channel, const char *account)
{
    json_t  *item;

    item = json_pack("{s:s, s:s, s:s}", "kind", kind, "channel", channel,
                     "account", account);

    if (item == NULL || json_array_append_new(in->items, item) != 0) {
        return NULL;
    }

    return item;
}


void
orbit_channel_error(orbit_channel_out_t *out, ngx_int_t code,
    const char *title)
{
    char    *e;
    json_t  *j;

    j = json_pack("{s:I, s:s}", "code", (json_int_t) code, "title", title);
    e = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    if (e == NULL) {
        ngx_str_null(&out->error);
        return;
    }

    out->error.len = ngx_strlen(e);
    out->error.data = ngx_pnalloc(out->pool, out->error.len);

    if (out->error.data) {
        ngx_memcpy(out->error.data, e, out->error.len);

    } else {
        out->error.len = 0;
    }

    free(e);
}


ngx_int_t
orbit_channel_header(orbit_channel_out_t *out, const char *name,
    const char *value)
{
    ngx_str_t  line;

    line.len = ngx_strlen(name) + 2 + ngx_strlen(value);
    line.data = ngx_pnalloc(out->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(line.data, "%s: %s", name, value);

    return orbit_http_req_header(out->req, &line);
}


ngx_int_t
orbit_channel_hub_signature(orbit_channel_in_t *in, const char *secret)
{
    u_char           *sig;
    ngx_table_elt_t  *h;
    char              mac[ORBIT_SHA256_HEX_LEN + 1];
    u_char            got[ORBIT_SHA256_HEX_LEN];

    h = orbit_header_in(in->ar->r, "X-Hub-Signature-256");

    if (h == NULL) {
        in->error = "X-Hub-Signature-256 is missing";
        return NGX_HTTP_FORBIDDEN;
    }

    sig = h->value.data;

    if (h->value.len != sizeof("sha256=") - 1 + ORBIT_SHA256_HEX_LEN
        || ngx_strncasecmp(sig, (u_char *) "sha256=", sizeof("sha256=") - 1)
           != 0)
    {
        in->error = "X-Hub-Signature-256 must be sha256=<64 hex digits>";
        return NGX_HTTP_FORBIDDEN;
    }

    ngx_strlow(got, sig + sizeof("sha256=") - 1, ORBIT_SHA256_HEX_LEN);

    if (orbit_hmac_sha256_hex(mac, secret, ngx_strlen(secret),
                              in->body.data, in->body.len)
        != 0)
    {
        in->error = "the signature could not be computed";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!orbit_equal(mac, ORBIT_SHA256_HEX_LEN, got, ORBIT_SHA256_HEX_LEN)) {
        in->error = "X-Hub-Signature-256 does not match the body";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


ngx_int_t
orbit_channel_sign(orbit_channel_out_t *out, const char *secret,
    ngx_str_t *body, char **header)
{
    char  *h;

    h = ngx_pnalloc(out->pool, sizeof("sha256=") + ORBIT_SHA256_HEX_LEN);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(h, "sha256=", sizeof("sha256=") - 1);

    if (orbit_hmac_sha256_hex(h + sizeof("sha256=") - 1, secret,
                              ngx_strlen(secret), body->data, body->len)
        != 0)
    {
        return NGX_ERROR;
    }

    *header = h;

    return NGX_OK;
}


ngx_int_t
orbit_channel_body(orbit_channel_out_t *out, json_t *body)
{
    char  *text;

    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);

    if (text == NULL) {
        return NGX_ERROR;
    }

    out->req->body.len = ngx_strlen(text);
    out->req->body.data = ngx_pnalloc(out->pool, out->req->body.len);

    if (out->req->body.data == NULL) {
        free(text);
        return NGX_ERROR;
    }

    ngx_memcpy(out->req->body.data, text, out->req->body.len);
    free(text);

    return NGX_OK;
}


ngx_int_t
orbit_channel_provider_id(orbit_channel_out_t *out, const char *id)
{
    out->provider_id.len = ngx_strlen(id);
    out->provider_id.data = ngx_pnalloc(out->pool, out->provider_id.len + 1);

    if (out->provider_id.data == NULL) {
        out->provider_id.len = 0;
        return NGX_ERROR;
    }

    ngx_memcpy(out->provider_id.data, id, out->provider_id.len + 1);

    return NGX_OK;
}


/* the Meta app's secret or verify token; NULL (logged) when not set */

const char *
orbit_channel_meta_secret(orbit_channel_in_t *in, ngx_uint_t verify_token)
{
    const char       *value;
    orbit_secrets_t  *secrets;

    secrets = ngx_http_orbit_secrets();

    value = secrets == NULL ? ""
            : verify_token ? secrets->meta_verify_token
            : secrets->meta_app_secret;

    if (value[0] != '\0') {
        return value;
    }

    in->error = "Meta webhooks are not configured here";

    ngx_log_error(NGX_LOG_ERR, in->ar->r->connection->log, 0,
                  "%s webhook: %s is not set in the secrets file",
                  in->channel->name,
                  verify_token ? "META_VERIFY_TOKEN" : "META_APP_SECRET");

    return NULL;
}


/* GET ?hub.mode=subscribe&hub.verify_token=T&hub.challenge=C -> C */

ngx_int_t
orbit_channel_hub_challenge(orbit_channel_in_t *in, ngx_str_t *reply)
{
    char        *mode, *token, *challenge;
    const char  *secret;

    secret = orbit_channel_meta_secret(in, 1);
    if (secret == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    mode = orbit_api_arg(in->ar, "hub.mode");
    token = orbit_api_arg(in->ar, "hub.verify_token");
    challenge = orbit_api_arg(in->ar, "hub.challenge");

    if (mode == NULL || ngx_strcmp(mode, "subscribe") != 0) {
        in->error = "hub.mode must be subscribe";
        return NGX_HTTP_FORBIDDEN;
    }

    if (token == NULL
        || !orbit_equal(token, ngx_strlen(token), secret,
                        ngx_strlen(secret)))
    {
        in->error = "hub.verify_token does not match";
        return NGX_HTTP_FORBIDDEN;
    }

    if (challenge == NULL || challenge[0] == '\0'
        || ngx_strlen(challenge) > 1024)
    {
        in->error = "hub.challenge is missing";
        return NGX_HTTP_BAD_REQUEST;
    }

    reply->data = (u_char *) challenge;
    reply->len = ngx_strlen(challenge);

    return NGX_OK;
}


/*
 * A Graph API answer that is not a success: Graph's {"error":{"message",
 * "code","error_data":{"details"}}} as out->error.  No answer, 5xx, 429
 * and Graph's throttling codes: later.  Any other: never.
 */

orbit_send_rc_e
orbit_channel_graph_error(orbit_channel_out_t *out, json_t *res,
    const char *provider)
{
    json_t           *e;
    size_t            i;
    u_char           *p;
    ngx_int_t         code;
    ngx_uint_t        status;
    const char       *msg, *details;
    ngx_table_elt_t  *h;
    u_char            title[64];

    status = out->req->status;

    e = json_object_get(res, "error");
    code = json_is_integer(json_object_get(e, "code"))
           ? (ngx_int_t) json_integer_value(json_object_get(e, "code"))
           : (ngx_int_t) status;
    msg = json_string_value(json_object_get(e, "message"));
    details = json_string_value(json_object_get(
                  json_object_get(e, "error_data"), "details"));

    if (msg == NULL) {
        p = ngx_snprintf(title, sizeof(title) - 1, "%s %s", provider,
                         status ? "refused it" : "did not answer");
        *p = '\0';
        msg = (char *) title;
    }

    orbit_channel_error(out, code, msg);

    if (details && out->error.len) {
        /* {"code":..,"title":..} + "details" */
        e = json_loadb((char *) out->error.data, out->error.len, 0, NULL);
        json_object_set_new(e, "details", json_string(details));
        msg = json_dumps(e, JSON_COMPACT);
        json_decref(e);

        if (msg) {
            out->error.len = ngx_strlen(msg);
            out->error.data = ngx_pnalloc(out->pool, out->error.len);
            if (out->error.data) {
                ngx_memcpy(out->error.data, msg, out->error.len);
            } else {
                out->error.len = 0;
            }
            free((char *) msg);
        }
    }

    /* throttled: 4 (app), 17 (user), 32 (page), 613 (calls), 80006
     * (Messenger), 80007 (WhatsApp account), 130429 (throughput), 131056
     * (pair rate) */

    if (status == 0 || status == 429 || status >= 500
        || code == 4 || code == 17 || code == 32 || code == 613
        || code == 80006 || code == 80007 || code == 130429
        || code == 131056)
    {
        for (i = 0; out->req->response_headers
                    && i < out->req->response_headers->nelts; i++)
        {
            h = (ngx_table_elt_t *) out->req->response_headers->elts + i;

            if (h->key.len == sizeof("Retry-After") - 1
                && ngx_strncasecmp(h->key.data, (u_char *) "Retry-After",
                                   h->key.len) == 0)
            {
                code = ngx_atoi(h->value.data, h->value.len);
                if (code > 0 && code < 3600) {
                    out->retry_after = (ngx_msec_t) code * 1000;
                }
                break;
            }
        }

        return ORBIT_SEND_RETRY;
    }

    return ORBIT_SEND_FAIL;
}


void
orbit_channel_out_release(orbit_channel_out_t *out)
{
    json_decref(out->message);
    json_decref(out->config);
    json_decref(out->credentials);
    json_decref(out->thread);

    out->message = NULL;
    out->config = NULL;
    out->credentials = NULL;
    out->thread = NULL;
}


/* a job's pool cleanup: a run cut off (lease, shutdown) leaks nothing */

static void
orbit_channel_out_cleanup(void *data)
{
    orbit_channel_out_release(data);
}


ngx_int_t
orbit_channel_out_guard(orbit_channel_out_t *out, ngx_pool_t *pool)
{
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    cln->handler = orbit_channel_out_cleanup;
    cln->data = out;

    return NGX_OK;
}


ngx_int_t
orbit_channel_meta_verify(orbit_channel_in_t *in)
{
    const char  *secret;

    secret = orbit_channel_meta_secret(in, 0);
    if (secret == NULL) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    return orbit_channel_hub_signature(in, secret);
}
