/*
 * OrbitDesk channels: WhatsApp Cloud API (PROTOCOLS.md §1).
 *
 * One Meta app receives the webhooks of every tenant's numbers: its
 * secret (META_APP_SECRET) signs each POST in X-Hub-Signature-256, its
 * verify token (META_VERIFY_TOKEN) answers the verification GET, both from
 * the secrets file.  A change is routed to its tenant by
 * value.metadata.phone_number_id, the account of a "whatsapp" connection.
 *
 * Outbound: POST {api}/{phone-number-id}/messages with the connection's
 * credentials.accessToken, {api} being orbit_channel_api whatsapp or
 * Graph's.  Our message id rides along as biz_opaque_callback_data, which
 * Meta echoes in the statuses of the message.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"


#define ORBIT_WA_ID_MAX     256           /* provider ids we keep */
#define ORBIT_WA_API        "https://graph.facebook.com/v21.0"


/* where in the payload we are, for the messages of a 400 */
typedef struct {
    orbit_channel_in_t          *in;
    const char                  *account;     /* phone_number_id */
    json_t                      *value;       /* the change's */
    size_t                       entry;
    size_t                       change;
    size_t                       item;
} orbit_wa_ctx_t;


static ngx_int_t orbit_wa_normalize(orbit_channel_in_t *in);
static ngx_int_t orbit_wa_payload(orbit_channel_in_t *in, json_t *root);
static ngx_int_t orbit_wa_change(orbit_wa_ctx_t *ctx, json_t *change);
static ngx_int_t orbit_wa_message(orbit_wa_ctx_t *ctx, json_t *msg);
static json_t *orbit_wa_content(orbit_wa_ctx_t *ctx, json_t *msg,
    const char *type, const char **our_type, const char **reply_to);
static json_t *orbit_wa_media(json_t *media, const char *type);
static json_t *orbit_wa_interactive(json_t *in);
static ngx_int_t orbit_wa_status(orbit_wa_ctx_t *ctx, json_t *st);
static const char *orbit_wa_name(json_t *value, const char *wa_id);
static ngx_int_t orbit_wa_timestamp(json_t *ts, json_int_t *out);
static ngx_int_t orbit_wa_bad(orbit_wa_ctx_t *ctx, const char *what,
    const char *why);
static ngx_int_t orbit_wa_send(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_wa_sent(orbit_channel_out_t *out);
static ngx_int_t orbit_wa_mark_read(orbit_channel_out_t *out,
    const char *provider_id);
static json_t *orbit_wa_outbound(orbit_channel_out_t *out);
static ngx_int_t orbit_wa_request(orbit_channel_out_t *out, json_t *body);
static ngx_int_t orbit_wa_media_locate(orbit_channel_out_t *out,
    json_t *media);
static ngx_int_t orbit_wa_media_located(orbit_channel_out_t *out);
static ngx_int_t orbit_wa_bearer(orbit_channel_out_t *out);


const orbit_channel_t  orbit_channel_whatsapp = {
    "whatsapp",
    "whatsapp",
    orbit_channel_hub_challenge,
    orbit_channel_meta_verify,
    orbit_wa_normalize,
    orbit_wa_send,
    orbit_wa_sent,
    orbit_wa_mark_read,
    NULL,
    NULL,
    orbit_wa_media_locate,
    orbit_wa_media_located,
    0,
    NULL,
};


static ngx_int_t
orbit_wa_normalize(orbit_channel_in_t *in)
{
    json_t        *root;
    ngx_int_t      rc;
    json_error_t   err;

    root = json_loadb((char *) in->body.data, in->body.len, 0, &err);

    if (root == NULL) {
        in->error = "the body is not JSON";
        return NGX_HTTP_BAD_REQUEST;
    }

    rc = orbit_wa_payload(in, root);

    json_decref(root);

    return rc;
}


static ngx_int_t
orbit_wa_payload(orbit_channel_in_t *in, json_t *root)
{
    size_t           i, k;
    json_t          *entry, *changes, *change;
    ngx_int_t        rc;
    const char      *object;
    orbit_wa_ctx_t   ctx;

    ngx_memzero(&ctx, sizeof(orbit_wa_ctx_t));
    ctx.in = in;

    object = json_string_value(json_object_get(root, "object"));

    if (object == NULL
        || ngx_strcmp(object, "whatsapp_business_account") != 0)
    {
        in->error = "object must be whatsapp_business_account";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (!json_is_array(json_object_get(root, "entry"))) {
        in->error = "entry must be an array";
        return NGX_HTTP_BAD_REQUEST;
    }

    json_array_foreach(json_object_get(root, "entry"), i, entry) {
        ctx.entry = i;
        changes = json_object_get(entry, "changes");

        if (!json_is_array(changes)) {
            return orbit_wa_bad(&ctx, "changes", "must be an array");
        }

        json_array_foreach(changes, k, change) {
            ctx.change = k;

            rc = orbit_wa_change(&ctx, change);
            if (rc != NGX_OK) {
                return rc;
            }
        }
    }

    return NGX_OK;
}


/* a change of field "messages": its messages and statuses */

static ngx_int_t
orbit_wa_change(orbit_wa_ctx_t *ctx, json_t *change)
{
    size_t       i;
    json_t      *value, *list, *one;
    ngx_int_t    rc;
    const char  *field;

    field = json_string_value(json_object_get(change, "field"));

    if (field == NULL) {
        return orbit_wa_bad(ctx, "field", "must be a string");
    }

    if (ngx_strcmp(field, "messages") != 0) {
        return NGX_OK;          /* template reviews, quality, account... */
    }

    value = json_object_get(change, "value");

    if (!json_is_object(value)) {
        return orbit_wa_bad(ctx, "value", "must be an object");
    }

    ctx->value = value;
    ctx->account = json_string_value(json_object_get(
                       json_object_get(value, "metadata"), "phone_number_id"));

    if (ctx->account == NULL || ctx->account[0] == '\0'
        || ngx_strlen(ctx->account) > 200)
    {
        return orbit_wa_bad(ctx, "value.metadata.phone_number_id",
                            "must be a string");
    }

    list = json_object_get(value, "messages");

    if (list && !json_is_array(list)) {
        return orbit_wa_bad(ctx, "value.messages", "must be an array");
    }

    json_array_foreach(list, i, one) {
        ctx->item = i;

        rc = orbit_wa_message(ctx, one);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    list = json_object_get(value, "statuses");

    if (list && !json_is_array(list)) {
        return orbit_wa_bad(ctx, "value.statuses", "must be an array");
    }

    json_array_foreach(list, i, one) {
        ctx->item = i;

        rc = orbit_wa_status(ctx, one);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    return NGX_OK;
}


static ngx_int_t
orbit_wa_message(orbit_wa_ctx_t *ctx, json_t *msg)
{
    json_t      *item, *contact, *content;
    json_int_t   ts;
    const char  *from, *id, *type, *our_type, *reply_to, *name;
    u_char       phone[20];

    from = json_string_value(json_object_get(msg, "from"));
    id = json_string_value(json_object_get(msg, "id"));
    type = json_string_value(json_object_get(msg, "type"));

    if (from == NULL || from[0] == '\0' || ngx_strlen(from) > 64) {
        return orbit_wa_bad(ctx, "value.messages[].from", "must be a wa_id");
    }

    if (id == NULL || id[0] == '\0' || ngx_strlen(id) > ORBIT_WA_ID_MAX) {
        return orbit_wa_bad(ctx, "value.messages[].id",
                            "must be a message id");
    }

    if (type == NULL) {
        return orbit_wa_bad(ctx, "value.messages[].type", "must be a string");
    }

    if (orbit_wa_timestamp(json_object_get(msg, "timestamp"), &ts)
        != NGX_OK)
    {
        return orbit_wa_bad(ctx, "value.messages[].timestamp",
                            "must be Unix seconds");
    }

    reply_to = json_string_value(json_object_get(
                   json_object_get(msg, "context"), "id"));

    content = orbit_wa_content(ctx, msg, type, &our_type, &reply_to);
    if (content == NULL) {
        return ctx->in->error ? NGX_HTTP_BAD_REQUEST
                              : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    item = orbit_channel_item(ctx->in, "message", "whatsapp", ctx->account);
    contact = json_object();

    if (item == NULL || contact == NULL) {
        json_decref(content);
        json_decref(contact);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(contact, "externalId", json_string(from));

    /* a wa_id is the number without its "+": a contact's phone */
    if (ngx_strlen(from) < sizeof(phone) - 1) {
        ngx_sprintf(phone, "+%s%Z", from);

        if (orbit_valid_e164((char *) phone, ngx_strlen(phone))) {
            json_object_set_new(contact, "phone",
                                json_string((char *) phone));
        }
    }

    name = orbit_wa_name(ctx->value, from);
    if (name) {
        json_object_set_new(contact, "name", json_string(name));
    }

    json_object_set_new(item, "contact", contact);
    json_object_set_new(item, "providerMessageId", json_string(id));
    json_object_set_new(item, "type", json_string(our_type));
    json_object_set_new(item, "content", content);
    json_object_set_new(item, "timestamp", json_integer(ts));

    if (reply_to && reply_to[0] && ngx_strlen(reply_to) <= ORBIT_WA_ID_MAX) {
        json_object_set_new(item, "replyTo", json_string(reply_to));
    }

    return NGX_OK;
}


/*
 * The message's content in our shape (the inbox's, whatever the
 * channel): "text" for what reads as text (a caption, a button's title),
 * the type's own object beside it.  NULL with in->error when malformed.
 */

static json_t *
orbit_wa_content(orbit_wa_ctx_t *ctx, json_t *msg, const char *type,
    const char **our_type, const char **reply_to)
{
    json_t      *obj, *c, *v;
    const char  *text;

    c = json_object();
    if (c == NULL) {
        return NULL;
    }

    obj = json_object_get(msg, type);
    *our_type = type;

    if (ngx_strcmp(type, "text") == 0) {
        text = json_string_value(json_object_get(obj, "body"));

        if (text == NULL) {
            json_decref(c);
            (void) orbit_wa_bad(ctx, "value.messages[].text.body",
                                "must be a string");
            return NULL;
        }

        json_object_set_new(c, "text", json_string(text));

    } else if (ngx_strcmp(type, "image") == 0
               || ngx_strcmp(type, "video") == 0
               || ngx_strcmp(type, "audio") == 0
               || ngx_strcmp(type, "document") == 0
               || ngx_strcmp(type, "sticker") == 0)
    {
        if (json_string_value(json_object_get(obj, "id")) == NULL) {
            json_decref(c);
            (void) orbit_wa_bad(ctx, "value.messages[].<media>.id",
                                "must be a media id");
            return NULL;
        }

        json_object_set_new(c, "media", orbit_wa_media(obj, type));

        text = json_string_value(json_object_get(obj, "caption"));
        if (text) {
            json_object_set_new(c, "caption", json_string(text));
        }

    } else if (ngx_strcmp(type, "location") == 0) {
        if (!json_is_number(json_object_get(obj, "latitude"))
            || !json_is_number(json_object_get(obj, "longitude")))
        {
            json_decref(c);
            (void) orbit_wa_bad(ctx, "value.messages[].location",
                                "must have a latitude and a longitude");
            return NULL;
        }

        v = json_pack("{s:O, s:O}",
                      "latitude", json_object_get(obj, "latitude"),
                      "longitude", json_object_get(obj, "longitude"));

        if (json_is_string(json_object_get(obj, "name"))) {
            json_object_set(v, "name", json_object_get(obj, "name"));
        }

        if (json_is_string(json_object_get(obj, "address"))) {
            json_object_set(v, "address", json_object_get(obj, "address"));
        }

        json_object_set_new(c, "location", v);

    } else if (ngx_strcmp(type, "contacts") == 0) {
        obj = json_object_get(msg, "contacts");

        if (!json_is_array(obj)) {
            json_decref(c);
            (void) orbit_wa_bad(ctx, "value.messages[].contacts",
                                "must be an array");
            return NULL;
        }

        json_object_set(c, "contacts", obj);

    } else if (ngx_strcmp(type, "interactive") == 0) {
        if (!json_is_object(obj)) {
            json_decref(c);
            (void) orbit_wa_bad(ctx, "value.messages[].interactive",
                                "must be an object");
            return NULL;
        }

        v = orbit_wa_interactive(obj);
        text = json_string_value(json_object_get(v, "title"));

        if (text) {
            json_object_set_new(c, "text", json_string(text));
        }

        json_object_set_new(c, "interactive", v);

    } else if (ngx_strcmp(type, "button") == 0) {
        text = json_string_value(json_object_get(obj, "text"));

        if (text == NULL) {
            json_decref(c);
            (void) orbit_wa_bad(ctx, "value.messages[].button.text",
                                "must be a string");
            return NULL;
        }

        json_object_set_new(c, "text", json_string(text));
        json_object_set_new(c, "button", json_pack("{s:s, s:s?}",
                            "text", text, "payload",
                            json_string_value(json_object_get(obj,
                                                              "payload"))));

    } else if (ngx_strcmp(type, "reaction") == 0) {
        *reply_to = json_string_value(json_object_get(obj, "message_id"));

        if (*reply_to == NULL) {
            json_decref(c);
            (void) orbit_wa_bad(ctx, "value.messages[].reaction.message_id",
                                "must be a message id");
            return NULL;
        }

        /* no emoji: the reaction was taken back */
        text = json_string_value(json_object_get(obj, "emoji"));

        json_object_set_new(c, "reaction", json_pack("{s:s, s:s?}",
                            "messageId", *reply_to, "emoji", text));

        if (text) {
            json_object_set_new(c, "emoji", json_string(text));
        }

    } else if (ngx_strcmp(type, "order") == 0) {
        json_object_set(c, "order", obj ? obj : json_null());

    } else {
        /* system, unsupported, and types newer than this adapter: kept
         * as they came, for the agent to see that something arrived */
        *our_type = "unsupported";

        json_object_set_new(c, "unsupported", json_pack("{s:s}",
                            "type", type));

        v = json_object_get(msg, "errors");
        if (v) {
            json_object_set(json_object_get(c, "unsupported"), "errors", v);
        }

        if (obj) {
            json_object_set(json_object_get(c, "unsupported"), type, obj);
        }
    }

    /* an ad's click, a forward */

    v = json_object_get(msg, "referral");
    if (json_is_object(v)) {
        json_object_set(c, "referral", v);
    }

    v = json_object_get(json_object_get(msg, "context"), "forwarded");
    if (json_is_true(v)) {
        json_object_set_new(c, "forwarded", json_true());
    }

    return c;
}


/* the provider's media, to be fetched later with the connection's token */

static json_t *
orbit_wa_media(json_t *media, const char *type)
{
    json_t      *m;
    const char  *s;

    m = json_pack("{s:s, s:O}", "provider", "whatsapp",
                  "id", json_object_get(media, "id"));
    if (m == NULL) {
        return NULL;
    }

    s = json_string_value(json_object_get(media, "mime_type"));
    if (s) {
        json_object_set_new(m, "mimeType", json_string(s));
    }

    s = json_string_value(json_object_get(media, "sha256"));
    if (s) {
        json_object_set_new(m, "sha256", json_string(s));
    }

    s = json_string_value(json_object_get(media, "filename"));
    if (s) {
        json_object_set_new(m, "filename", json_string(s));
    }

    if (ngx_strcmp(type, "sticker") == 0
        && json_is_boolean(json_object_get(media, "animated")))
    {
        json_object_set(m, "animated", json_object_get(media, "animated"));
    }

    return m;
}


/* button_reply {id,title}, list_reply {id,title,description}, nfm_reply */

static json_t *
orbit_wa_interactive(json_t *in)
{
    json_t      *out, *reply;
    const char  *type;

    type = json_string_value(json_object_get(in, "type"));
    reply = type ? json_object_get(in, type) : NULL;

    if (!json_is_object(reply)) {
        return json_deep_copy(in);
    }

    out = json_deep_copy(reply);
    if (out == NULL) {
        return NULL;
    }

    json_object_set_new(out, "type", json_string(type));

    if (json_object_get(out, "response_json")) {
        json_object_set(out, "responseJson",
                        json_object_get(out, "response_json"));
        json_object_del(out, "response_json");
    }

    return out;
}


static ngx_int_t
orbit_wa_status(orbit_wa_ctx_t *ctx, json_t *st)
{
    json_t      *item, *e, *error;
    json_int_t   ts;
    const char  *id, *status, *details, *opaque;

    id = json_string_value(json_object_get(st, "id"));
    status = json_string_value(json_object_get(st, "status"));

    if (id == NULL || id[0] == '\0' || ngx_strlen(id) > ORBIT_WA_ID_MAX) {
        return orbit_wa_bad(ctx, "value.statuses[].id",
                            "must be a message id");
    }

    if (status == NULL) {
        return orbit_wa_bad(ctx, "value.statuses[].status",
                            "must be a string");
    }

    if (orbit_wa_timestamp(json_object_get(st, "timestamp"), &ts) != NGX_OK) {
        return orbit_wa_bad(ctx, "value.statuses[].timestamp",
                            "must be Unix seconds");
    }

    if (ngx_strcmp(status, "sent") != 0
        && ngx_strcmp(status, "delivered") != 0
        && ngx_strcmp(status, "read") != 0
        && ngx_strcmp(status, "failed") != 0)
    {
        return NGX_OK;          /* deleted, warning, playing: not ours */
    }

    item = orbit_channel_item(ctx->in, "status", "whatsapp", ctx->account);
    if (item == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "providerMessageId", json_string(id));
    json_object_set_new(item, "status", json_string(status));
    json_object_set_new(item, "timestamp", json_integer(ts));

    /* our id, sent as biz_opaque_callback_data: a status that outruns
     * the commit of its send still finds its message */
    opaque = json_string_value(json_object_get(st,
                                               "biz_opaque_callback_data"));
    if (opaque && orbit_valid_uuid(opaque, ngx_strlen(opaque))) {
        json_object_set_new(item, "messageId", json_string(opaque));
    }

    e = json_array_get(json_object_get(st, "errors"), 0);

    if (json_is_object(e)) {
        error = json_object();
        if (error == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (json_is_integer(json_object_get(e, "code"))) {
            json_object_set(error, "code", json_object_get(e, "code"));
        }

        if (json_is_string(json_object_get(e, "title"))) {
            json_object_set(error, "title", json_object_get(e, "title"));
        }

        if (json_is_string(json_object_get(e, "message"))) {
            json_object_set(error, "message", json_object_get(e, "message"));
        }

        details = json_string_value(json_object_get(
                      json_object_get(e, "error_data"), "details"));
        if (details) {
            json_object_set_new(error, "details", json_string(details));
        }

        json_object_set_new(item, "error", error);
    }

    return NGX_OK;
}


/* the profile name value.contacts[] gives a wa_id, if any */

static const char *
orbit_wa_name(json_t *value, const char *wa_id)
{
    size_t       i;
    json_t      *c;
    const char  *id;

    json_array_foreach(json_object_get(value, "contacts"), i, c) {
        id = json_string_value(json_object_get(c, "wa_id"));

        if (id && ngx_strcmp(id, wa_id) == 0) {
            return json_string_value(json_object_get(
                       json_object_get(c, "profile"), "name"));
        }
    }

    return NULL;
}


/* "1700000000" (Meta sends a string of digits) */

static ngx_int_t
orbit_wa_timestamp(json_t *ts, json_int_t *out)
{
    size_t       len;
    const char  *s;
    ngx_int_t    n;

    if (json_is_integer(ts)) {
        *out = json_integer_value(ts);
        return *out >= 0 ? NGX_OK : NGX_ERROR;
    }

    s = json_string_value(ts);
    if (s == NULL) {
        return NGX_ERROR;
    }

    len = ngx_strlen(s);
    if (len == 0 || len > 12) {
        return NGX_ERROR;
    }

    n = ngx_atoi((u_char *) s, len);
    if (n == NGX_ERROR) {
        return NGX_ERROR;
    }

    *out = n;

    return NGX_OK;
}


static ngx_int_t
orbit_wa_bad(orbit_wa_ctx_t *ctx, const char *what, const char *why)
{
    u_char  *msg;
    size_t   len;

    len = sizeof("entry[].changes[] ") + 3 * NGX_SIZE_T_LEN
          + ngx_strlen(what) + ngx_strlen(why) + 16;

    msg = ngx_pnalloc(ctx->in->ar->r->pool, len);

    if (msg == NULL) {
        ctx->in->error = "the payload is malformed";

    } else {
        ngx_snprintf(msg, len, "entry[%uz].changes[%uz] %s %s (item %uz)%Z",
                     ctx->entry, ctx->change, what, why, ctx->item);
        ctx->in->error = (char *) msg;
    }

    return NGX_HTTP_BAD_REQUEST;
}


/* outbound ------------------------------------------------------------ */


static ngx_int_t
orbit_wa_send(orbit_channel_out_t *out)
{
    json_t  *body;

    body = orbit_wa_outbound(out);
    if (body == NULL) {
        return NGX_DECLINED;
    }

    return orbit_wa_request(out, body);
}


static ngx_int_t
orbit_wa_mark_read(orbit_channel_out_t *out, const char *provider_id)
{
    json_t  *body;

    body = json_pack("{s:s, s:s, s:s}", "messaging_product", "whatsapp",
                     "status", "read", "message_id", provider_id);
    if (body == NULL) {
        return NGX_ERROR;
    }

    return orbit_wa_request(out, body);
}


/* our message as Graph's body; NULL with out->error when it cannot be */

static json_t *
orbit_wa_outbound(orbit_channel_out_t *out)
{
    json_t      *m, *c, *body, *obj, *v;
    const char  *type, *id;

    m = out->message;
    c = json_object_get(m, "content");
    type = json_string_value(json_object_get(m, "type"));
    id = json_string_value(json_object_get(m, "id"));

    if (type == NULL || out->to == NULL) {
        orbit_channel_error(out, 400, "The message has no type or no "
                                      "recipient on WhatsApp");
        return NULL;
    }

    body = json_pack("{s:s, s:s, s:s, s:s, s:s?}",
                     "messaging_product", "whatsapp",
                     "recipient_type", "individual", "to", out->to,
                     "type", type, "biz_opaque_callback_data", id);
    if (body == NULL) {
        return NULL;
    }

    if (ngx_strcmp(type, "text") == 0) {
        obj = json_pack("{s:b, s:O}", "preview_url",
                        json_is_true(json_object_get(c, "previewUrl")),
                        "body", json_object_get(c, "text"));

    } else if (ngx_strcmp(type, "template") == 0) {
        v = json_object_get(json_object_get(c, "template"), "language");
        obj = json_deep_copy(json_object_get(c, "template"));

        if (obj && json_is_string(v)) {
            json_object_set_new(obj, "language",
                                json_pack("{s:O}", "code", v));
        }

    } else if (ngx_strcmp(type, "image") == 0
               || ngx_strcmp(type, "video") == 0
               || ngx_strcmp(type, "audio") == 0
               || ngx_strcmp(type, "document") == 0
               || ngx_strcmp(type, "sticker") == 0)
    {
        v = json_object_get(c, "media");
        obj = json_pack("{s:O?}", "link", json_object_get(v, "url"));

        if (obj && json_is_string(json_object_get(c, "caption"))
            && ngx_strcmp(type, "audio") != 0
            && ngx_strcmp(type, "sticker") != 0)
        {
            json_object_set(obj, "caption", json_object_get(c, "caption"));
        }

        if (obj && ngx_strcmp(type, "document") == 0
            && json_is_string(json_object_get(v, "filename")))
        {
            json_object_set(obj, "filename", json_object_get(v, "filename"));
        }

    } else {
        json_decref(body);
        orbit_channel_error(out, 400, "WhatsApp does not send this type");
        return NULL;
    }

    if (obj == NULL || json_object_set_new(body, type, obj) != 0) {
        json_decref(body);
        return NULL;
    }

    if (out->reply_to) {
        json_object_set_new(body, "context",
                            json_pack("{s:s}", "message_id", out->reply_to));
    }

    return body;
}


/* POST {api}/{phone-number-id}/messages, Bearer the connection's token */

static ngx_int_t
orbit_wa_request(orbit_channel_out_t *out, json_t *body)
{
    u_char      *p;
    ngx_str_t   *api;
    const char  *token;

    static ngx_str_t  graph = ngx_string(ORBIT_WA_API);

    token = json_string_value(json_object_get(out->credentials,
                                              "accessToken"));

    if (token == NULL || token[0] == '\0') {
        json_decref(body);
        orbit_channel_error(out, 401, "The WhatsApp connection has no "
                                      "credentials.accessToken");
        return NGX_DECLINED;
    }

    if (orbit_channel_body(out, body) != NGX_OK) {
        return NGX_ERROR;
    }

    api = ngx_http_orbit_channel_api_url("whatsapp", &graph);

    out->req->url.len = api->len + 1 + ngx_strlen(out->account)
                        + sizeof("/messages") - 1;
    out->req->url.data = ngx_pnalloc(out->pool, out->req->url.len);

    if (out->req->url.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->req->url.data, "%V/%s/messages", api, out->account);
    out->req->url.len = p - out->req->url.data;

    ngx_str_set(&out->req->method, "POST");

    if (orbit_wa_bearer(out) != NGX_OK
        || orbit_channel_header(out, "Content-Type", "application/json")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * 200 {"messages":[{"id":"wamid..."}]}: sent.  No answer, 5xx, 429, and
 * Graph's throttling codes: later.  Any other error: never, with Graph's
 * {"error":{"message","code","error_data":{"details"}}} as the reason.
 */

static orbit_send_rc_e
orbit_wa_sent(orbit_channel_out_t *out)
{
    json_t           *res;
    ngx_uint_t        status;
    const char       *id;
    orbit_send_rc_e   rc;

    status = out->req->status;

    res = json_loadb((char *) out->req->response.data,
                     out->req->response.len, 0, NULL);

    if (status >= 200 && status < 300) {
        id = json_string_value(json_object_get(json_array_get(
                 json_object_get(res, "messages"), 0), "id"));

        if (id == NULL && !json_is_true(json_object_get(res, "success"))) {
            json_decref(res);
            orbit_channel_error(out, (ngx_int_t) status,
                                "WhatsApp answered without a message id");
            return ORBIT_SEND_RETRY;
        }

        if (id && orbit_channel_provider_id(out, id) != NGX_OK) {
            json_decref(res);
            return ORBIT_SEND_RETRY;
        }

        json_decref(res);
        return ORBIT_SEND_DONE;
    }

    rc = orbit_channel_graph_error(out, res, "WhatsApp");

    json_decref(res);

    return rc;
}


/* an inbound media: GET {api}/{media-id} with the connection's token */

static ngx_int_t
orbit_wa_media_locate(orbit_channel_out_t *out, json_t *media)
{
    ngx_str_t   *api;
    const char  *id, *p;

    static ngx_str_t  graph = ngx_string(ORBIT_WA_API);

    id = json_string_value(json_object_get(media, "id"));

    for (p = id; p && *p; p++) {
        if (*p < '0' || *p > '9') {
            break;
        }
    }

    if (id == NULL || id[0] == '\0' || *p != '\0' || ngx_strlen(id) > 64) {
        orbit_channel_error(out, 400, "The media id is not WhatsApp's");
        return NGX_DECLINED;
    }

    api = ngx_http_orbit_channel_api_url("whatsapp", &graph);

    out->req->url.data = ngx_pnalloc(out->pool, api->len + 1 + ngx_strlen(id));
    if (out->req->url.data == NULL) {
        return NGX_ERROR;
    }

    out->req->url.len = ngx_sprintf(out->req->url.data, "%V/%s", api, id)
                        - out->req->url.data;

    return orbit_wa_bearer(out);
}


/* {"url": short-lived, "mime_type", ...}: GET it with the same token */

static ngx_int_t
orbit_wa_media_located(orbit_channel_out_t *out)
{
    json_t      *res;
    ngx_int_t    rc;
    const char  *url;

    res = json_loadb((char *) out->req->response.data,
                     out->req->response.len, 0, NULL);
    url = json_string_value(json_object_get(res, "url"));

    if (url == NULL || ngx_strlen(url) > 4096
        || (ngx_strncmp(url, "https://", 8) != 0
            && ngx_strncmp(url, "http://", 7) != 0))
    {
        json_decref(res);
        orbit_channel_error(out, 502, "Graph's answer names no media URL");
        return NGX_DECLINED;
    }

    out->req = orbit_http_req_create(out->pool);
    if (out->req == NULL) {
        json_decref(res);
        return NGX_ERROR;
    }

    out->req->url.len = ngx_strlen(url);
    out->req->url.data = ngx_pnalloc(out->pool, out->req->url.len);

    if (out->req->url.data == NULL) {
        json_decref(res);
        return NGX_ERROR;
    }

    ngx_memcpy(out->req->url.data, url, out->req->url.len);
    json_decref(res);

    rc = orbit_wa_bearer(out);

    return rc;
}


/* Authorization: Bearer credentials.accessToken, on out->req */

static ngx_int_t
orbit_wa_bearer(orbit_channel_out_t *out)
{
    u_char      *p;
    const char  *token;

    token = json_string_value(json_object_get(out->credentials,
                                              "accessToken"));

    if (token == NULL || token[0] == '\0') {
        orbit_channel_error(out, 401, "The WhatsApp connection has no "
                                      "credentials.accessToken");
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(out->pool, sizeof("Bearer ") + ngx_strlen(token));
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, "Bearer %s%Z", token);

    return orbit_channel_header(out, "Authorization", (char *) p);
}
