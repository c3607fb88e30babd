/*
 * OrbitDesk channels: Facebook Messenger and Instagram DMs (PROTOCOLS.md
 * §2), two adapters of one Meta app.
 *
 *   POST /api/v1/channels/messenger/webhook    "object":"page"
 *   POST /api/v1/channels/instagram/webhook    "object":"instagram"
 *
 * Like WhatsApp's, the webhooks are signed with the app's secret
 * (META_APP_SECRET, X-Hub-Signature-256) and verified with its token
 * (META_VERIFY_TOKEN).  An entry is routed by its id, the connection's
 * account: a page id, an Instagram professional account id.  Its
 * messaging[] events become items: messages (text, quick replies,
 * attachments by URL, postbacks, reactions), delivery statuses by mid, and
 * watermarks (delivery without mids, read) that move every message the
 * contact was sent up to then.  Echoes of our own sends, standby[] (threads
 * another app controls), deleted messages and comments are taken and
 * ignored.
 *
 * Outbound: POST {api}/{account}/messages with the connection's
 * credentials.accessToken (the page's token) as Bearer, {api} being
 * orbit_channel_api messenger|instagram or Graph's.  messaging_type
 * RESPONSE, or MESSAGE_TAG with tag HUMAN_AGENT when the connection's
 * config.humanAgentTag is true.  Read receipts and typing are sender
 * actions (mark_seen, typing_on, typing_off) to the contact.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"


#define ORBIT_META_ID_MAX   256           /* provider ids we keep */
#define ORBIT_META_API      "https://graph.facebook.com/v21.0"


/* what tells the two apart */
typedef struct {
    const char                  *name;        /* ours */
    const char                  *object;      /* the webhook's */
    const char                  *title;       /* for the reasons */
} orbit_meta_kind_t;


/* where in the payload we are, for the messages of a 400 */
typedef struct {
    orbit_channel_in_t          *in;
    const orbit_meta_kind_t     *kind;
    const char                  *account;     /* entry.id */
    const char                  *sender;      /* the event's */
    json_int_t                   ts;          /* ms, or -1 */
    size_t                       entry;
    size_t                       item;
} orbit_meta_ctx_t;


static ngx_int_t orbit_meta_normalize(orbit_channel_in_t *in);
static ngx_int_t orbit_meta_payload(orbit_meta_ctx_t *ctx, json_t *root);
static ngx_int_t orbit_meta_event(orbit_meta_ctx_t *ctx, json_t *ev);
static ngx_int_t orbit_meta_message(orbit_meta_ctx_t *ctx, json_t *msg);
static json_t *orbit_meta_content(orbit_meta_ctx_t *ctx, json_t *msg,
    const char **type);
static json_t *orbit_meta_attachment(orbit_meta_ctx_t *ctx, json_t *att,
    const char **type);
static ngx_int_t orbit_meta_postback(orbit_meta_ctx_t *ctx, json_t *pb);
static ngx_int_t orbit_meta_reaction(orbit_meta_ctx_t *ctx, json_t *re);
static ngx_int_t orbit_meta_delivery(orbit_meta_ctx_t *ctx, json_t *d,
    const char *status);
static ngx_int_t orbit_meta_status(orbit_meta_ctx_t *ctx, const char *mid,
    const char *status, json_int_t ts);
static json_t *orbit_meta_item(orbit_meta_ctx_t *ctx, const char *kind,
    const char *id);
static const char *orbit_meta_derived_id(orbit_meta_ctx_t *ctx,
    const char *prefix, const char *of, const char *what);
static ngx_int_t orbit_meta_bad(orbit_meta_ctx_t *ctx, const char *what,
    const char *why);

static ngx_int_t orbit_meta_send(orbit_channel_out_t *out,
    const orbit_meta_kind_t *kind);
static ngx_int_t orbit_meta_action(orbit_channel_out_t *out,
    const orbit_meta_kind_t *kind, const char *action);
static ngx_int_t orbit_meta_request(orbit_channel_out_t *out,
    const orbit_meta_kind_t *kind, json_t *body);
static orbit_send_rc_e orbit_meta_sent(orbit_channel_out_t *out,
    const orbit_meta_kind_t *kind);

static ngx_int_t orbit_messenger_send(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_messenger_sent(orbit_channel_out_t *out);
static ngx_int_t orbit_messenger_mark_read(orbit_channel_out_t *out,
    const char *provider_id);
static ngx_int_t orbit_messenger_typing(orbit_channel_out_t *out,
    ngx_uint_t on);
static ngx_int_t orbit_instagram_send(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_instagram_sent(orbit_channel_out_t *out);
static ngx_int_t orbit_instagram_mark_read(orbit_channel_out_t *out,
    const char *provider_id);
static ngx_int_t orbit_instagram_typing(orbit_channel_out_t *out,
    ngx_uint_t on);


static const orbit_meta_kind_t  orbit_meta_messenger = {
    "messenger", "page", "Messenger"
};

static const orbit_meta_kind_t  orbit_meta_instagram = {
    "instagram", "instagram", "Instagram"
};


const orbit_channel_t  orbit_channel_messenger = {
    "messenger",
    "messenger",
    orbit_channel_hub_challenge,
    orbit_channel_meta_verify,
    orbit_meta_normalize,
    orbit_messenger_send,
    orbit_messenger_sent,
    orbit_messenger_mark_read,
    NULL,
    NULL,
    NULL,
    NULL,
    ORBIT_CHANNEL_MEDIA_URL,
    orbit_messenger_typing,
};


const orbit_channel_t  orbit_channel_instagram = {
    "instagram",
    "instagram",
    orbit_channel_hub_challenge,
    orbit_channel_meta_verify,
    orbit_meta_normalize,
    orbit_instagram_send,
    orbit_instagram_sent,
    orbit_instagram_mark_read,
    NULL,
    NULL,
    NULL,
    NULL,
    ORBIT_CHANNEL_MEDIA_URL,
    orbit_instagram_typing,
};


static ngx_int_t
orbit_meta_normalize(orbit_channel_in_t *in)
{
    json_t            *root;
    ngx_int_t          rc;
    json_error_t       err;
    orbit_meta_ctx_t   ctx;

    ngx_memzero(&ctx, sizeof(orbit_meta_ctx_t));
    ctx.in = in;
    ctx.kind = (in->channel == &orbit_channel_instagram)
               ? &orbit_meta_instagram : &orbit_meta_messenger;

    root = json_loadb((char *) in->body.data, in->body.len, 0, &err);

    if (root == NULL) {
        in->error = "the body is not JSON";
        return NGX_HTTP_BAD_REQUEST;
    }

    rc = orbit_meta_payload(&ctx, root);

    json_decref(root);

    return rc;
}


static ngx_int_t
orbit_meta_payload(orbit_meta_ctx_t *ctx, json_t *root)
{
    size_t       i, k;
    json_t      *entry, *list, *ev;
    ngx_int_t    rc;
    const char  *object;

    object = json_string_value(json_object_get(root, "object"));

    if (object == NULL || ngx_strcmp(object, ctx->kind->object) != 0) {
        ctx->in->error = (ctx->kind == &orbit_meta_instagram)
                         ? "object must be instagram"
                         : "object must be page";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (!json_is_array(json_object_get(root, "entry"))) {
        ctx->in->error = "entry must be an array";
        return NGX_HTTP_BAD_REQUEST;
    }

    json_array_foreach(json_object_get(root, "entry"), i, entry) {
        ctx->entry = i;
        ctx->item = 0;

        if (!json_is_object(entry)) {
            return orbit_meta_bad(ctx, "", "must be an object");
        }

        ctx->account = json_string_value(json_object_get(entry, "id"));

        if (ctx->account == NULL || ctx->account[0] == '\0'
            || ngx_strlen(ctx->account) > 200)
        {
            return orbit_meta_bad(ctx, "id", "must be a string");
        }

        /* standby[] (another app's threads) and changes[] (Instagram's
         * comments, mentions) are not conversations of ours */

        list = json_object_get(entry, "messaging");

        if (list && !json_is_array(list)) {
            return orbit_meta_bad(ctx, "messaging", "must be an array");
        }

        json_array_foreach(list, k, ev) {
            ctx->item = k;

            rc = orbit_meta_event(ctx, ev);
            if (rc != NGX_OK) {
                return rc;
            }
        }
    }

    return NGX_OK;
}


/* one messaging[] event: what it holds says what it is */

static ngx_int_t
orbit_meta_event(orbit_meta_ctx_t *ctx, json_t *ev)
{
    json_t  *v;

    if (!json_is_object(ev)) {
        return orbit_meta_bad(ctx, "", "must be an object");
    }

    ctx->sender = json_string_value(json_object_get(
                      json_object_get(ev, "sender"), "id"));

    if (ctx->sender && (ctx->sender[0] == '\0'
                        || ngx_strlen(ctx->sender) > 200))
    {
        return orbit_meta_bad(ctx, "sender.id", "must be an id");
    }

    v = json_object_get(ev, "timestamp");
    ctx->ts = -1;

    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            return orbit_meta_bad(ctx, "timestamp", "must be Unix ms");
        }

        ctx->ts = json_integer_value(v);
    }

    if ((v = json_object_get(ev, "message"))) {
        return orbit_meta_message(ctx, v);
    }

    if ((v = json_object_get(ev, "postback"))) {
        return orbit_meta_postback(ctx, v);
    }

    if ((v = json_object_get(ev, "reaction"))) {
        return orbit_meta_reaction(ctx, v);
    }

    if ((v = json_object_get(ev, "delivery"))) {
        return orbit_meta_delivery(ctx, v, "delivered");
    }

    if ((v = json_object_get(ev, "read"))) {
        return orbit_meta_delivery(ctx, v, "read");
    }

    return NGX_OK;      /* optins, referrals, handovers: no message */
}


static ngx_int_t
orbit_meta_message(orbit_meta_ctx_t *ctx, json_t *msg)
{
    json_t      *item, *content;
    const char  *mid, *type, *reply_to;

    if (!json_is_object(msg)) {
        return orbit_meta_bad(ctx, "message", "must be an object");
    }

    /* our own sends (and the page's from other apps) come back as echoes;
     * a message the customer took back (Instagram's is_deleted) is left
     * as it was stored */

    if (json_is_true(json_object_get(msg, "is_echo"))
        || json_is_true(json_object_get(msg, "is_deleted")))
    {
        return NGX_OK;
    }

    mid = json_string_value(json_object_get(msg, "mid"));

    if (mid == NULL || mid[0] == '\0' || ngx_strlen(mid) > ORBIT_META_ID_MAX)
    {
        return orbit_meta_bad(ctx, "message.mid", "must be a message id");
    }

    content = orbit_meta_content(ctx, msg, &type);
    if (content == NULL) {
        return ctx->in->error ? NGX_HTTP_BAD_REQUEST
                              : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    item = orbit_meta_item(ctx, "message", mid);
    if (item == NULL) {
        json_decref(content);
        return ctx->in->error ? NGX_HTTP_BAD_REQUEST
                              : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "type", json_string(type));
    json_object_set_new(item, "content", content);

    reply_to = json_string_value(json_object_get(
                   json_object_get(msg, "reply_to"), "mid"));

    if (reply_to && reply_to[0]
        && ngx_strlen(reply_to) <= ORBIT_META_ID_MAX)
    {
        json_object_set_new(item, "replyTo", json_string(reply_to));
    }

    return NGX_OK;
}


/*
 * The content in our shape, the one WhatsApp's have (the inbox renders
 * both alike): "text"; a quick reply as a "button" {text, payload}; an
 * attachment as "media" {provider, url, ...} with the text as "caption";
 * more attachments in "attachments"; kinds we have no type for (share,
 * story_mention, fallback, ig_reel...) as "unsupported", their URL kept.
 */

static json_t *
orbit_meta_content(orbit_meta_ctx_t *ctx, json_t *msg, const char **type)
{
    size_t       i;
    json_t      *c, *atts, *att, *m, *list, *v;
    const char  *text, *payload, *one;

    *type = "unsupported";
    text = json_string_value(json_object_get(msg, "text"));
    atts = json_object_get(msg, "attachments");

    if (json_object_get(msg, "text") && text == NULL) {
        (void) orbit_meta_bad(ctx, "message.text", "must be a string");
        return NULL;
    }

    if (atts && !json_is_array(atts)) {
        (void) orbit_meta_bad(ctx, "message.attachments", "must be an array");
        return NULL;
    }

    c = json_object();
    if (c == NULL) {
        return NULL;
    }

    if (json_array_size(atts)) {
        list = json_array();
        if (list == NULL) {
            json_decref(c);
            return NULL;
        }

        json_array_foreach(atts, i, att) {
            m = orbit_meta_attachment(ctx, att, &one);
            if (m == NULL) {
                json_decref(list);
                json_decref(c);
                return NULL;
            }

            if (i == 0) {
                *type = one;
                json_object_set(c, "media", json_object_get(m, "media"));

                if (json_object_get(m, "unsupported")) {
                    json_object_set(c, "unsupported",
                                    json_object_get(m, "unsupported"));
                }
            }

            json_array_append_new(list, m);
        }

        if (json_array_size(list) > 1) {
            json_object_set(c, "attachments", list);
        }

        json_decref(list);

        if (text) {
            json_object_set_new(c, "caption", json_string(text));
        }

    } else if (text) {
        json_object_set_new(c, "text", json_string(text));

        payload = json_string_value(json_object_get(
                      json_object_get(msg, "quick_reply"), "payload"));
        *type = "text";

        if (payload) {
            *type = "button";
            json_object_set_new(c, "button", json_pack("{s:s, s:s}",
                                "text", text, "payload", payload));
        }

    } else {
        /* a shape newer than this adapter: kept, for the agent to see that
         * something arrived */
        *type = "unsupported";

        json_object_set_new(c, "unsupported", json_pack("{s:s}",
                            "type", "message"));
    }

    /* Instagram: a reply to a story; an ad's click */

    v = json_object_get(json_object_get(msg, "reply_to"), "story");
    if (json_is_object(v)) {
        json_object_set(c, "replyToStory", v);
    }

    v = json_object_get(msg, "referral");
    if (json_is_object(v)) {
        json_object_set(c, "referral", v);
    }

    return c;
}


/*
 * {"type":"image|video|audio|file|...", "payload":{"url",...}} as
 * {"type": ours, "media":{"provider","url","title"?,"stickerId"?},
 * "unsupported"?:{"type","payload"}}.
 */

static json_t *
orbit_meta_attachment(orbit_meta_ctx_t *ctx, json_t *att, const char **type)
{
    json_t      *a, *m, *payload, *v;
    const char  *kind, *url;

    kind = json_string_value(json_object_get(att, "type"));

    if (kind == NULL || kind[0] == '\0') {
        (void) orbit_meta_bad(ctx, "message.attachments[].type",
                              "must be a string");
        return NULL;
    }

    payload = json_object_get(att, "payload");
    url = json_string_value(json_object_get(payload, "url"));

    m = json_pack("{s:s}", "provider", ctx->kind->name);
    a = json_object();

    if (m == NULL || a == NULL) {
        json_decref(m);
        json_decref(a);
        return NULL;
    }

    if (url) {
        json_object_set_new(m, "url", json_string(url));
    }

    v = json_object_get(payload, "title");
    if (json_is_string(v)) {
        json_object_set(m, "title", v);
    }

    v = json_object_get(payload, "sticker_id");
    if (json_is_integer(v) || json_is_string(v)) {
        json_object_set(m, "stickerId", v);
    }

    if (url == NULL) {
        *type = "unsupported";

    } else if (ngx_strcmp(kind, "image") == 0) {
        *type = json_object_get(m, "stickerId") ? "sticker" : "image";

    } else if (ngx_strcmp(kind, "video") == 0
               || ngx_strcmp(kind, "audio") == 0)
    {
        *type = kind;

    } else if (ngx_strcmp(kind, "file") == 0) {
        *type = "document";

    } else {
        *type = "unsupported";
    }

    json_object_set_new(a, "type", json_string(*type));
    json_object_set_new(a, "media", m);

    if (ngx_strcmp(*type, "unsupported") == 0) {
        v = json_pack("{s:s}", "type", kind);

        if (v && json_is_object(payload)) {
            json_object_set(v, "payload", payload);
        }

        json_object_set_new(a, "unsupported", v);
    }

    return a;
}


/* a button of ours pressed: "interactive" as WhatsApp's button_reply */

static ngx_int_t
orbit_meta_postback(orbit_meta_ctx_t *ctx, json_t *pb)
{
    json_t      *item, *c, *v;
    const char  *mid, *title, *payload;

    if (!json_is_object(pb)) {
        return orbit_meta_bad(ctx, "postback", "must be an object");
    }

    mid = json_string_value(json_object_get(pb, "mid"));
    title = json_string_value(json_object_get(pb, "title"));
    payload = json_string_value(json_object_get(pb, "payload"));

    if (payload == NULL) {
        return orbit_meta_bad(ctx, "postback.payload", "must be a string");
    }

    /* no mid (older postbacks): one of its own, the same on a retry */
    if (mid == NULL || mid[0] == '\0' || ngx_strlen(mid) > ORBIT_META_ID_MAX)
    {
        mid = orbit_meta_derived_id(ctx, "postback", payload, "");
        if (mid == NULL) {
            return ctx->in->error ? NGX_HTTP_BAD_REQUEST
                                  : NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    c = json_object();
    v = json_pack("{s:s, s:s, s:s*}", "type", "postback", "id", payload,
                  "title", title);

    if (c == NULL || v == NULL) {
        json_decref(c);
        json_decref(v);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (title) {
        json_object_set_new(c, "text", json_string(title));
    }

    json_object_set_new(c, "interactive", v);

    v = json_object_get(pb, "referral");
    if (json_is_object(v)) {
        json_object_set(c, "referral", v);
    }

    item = orbit_meta_item(ctx, "message", mid);
    if (item == NULL) {
        json_decref(c);
        return ctx->in->error ? NGX_HTTP_BAD_REQUEST
                              : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "type", json_string("interactive"));
    json_object_set_new(item, "content", c);

    return NGX_OK;
}


/* react / unreact to a message: "reaction" as WhatsApp's (no emoji: the
 * reaction was taken back) */

static ngx_int_t
orbit_meta_reaction(orbit_meta_ctx_t *ctx, json_t *re)
{
    json_t      *item, *c;
    const char  *mid, *action, *emoji, *name, *id;

    mid = json_string_value(json_object_get(re, "mid"));
    action = json_string_value(json_object_get(re, "action"));
    emoji = json_string_value(json_object_get(re, "emoji"));
    name = json_string_value(json_object_get(re, "reaction"));

    if (mid == NULL || mid[0] == '\0' || ngx_strlen(mid) > ORBIT_META_ID_MAX)
    {
        return orbit_meta_bad(ctx, "reaction.mid", "must be a message id");
    }

    if (action == NULL
        || (ngx_strcmp(action, "react") != 0
            && ngx_strcmp(action, "unreact") != 0))
    {
        return orbit_meta_bad(ctx, "reaction.action",
                              "must be react or unreact");
    }

    if (ngx_strcmp(action, "unreact") == 0) {
        emoji = NULL;
        name = NULL;
    }

    /* a reaction has no mid of its own */
    id = orbit_meta_derived_id(ctx, "reaction", mid, action);
    if (id == NULL) {
        return ctx->in->error ? NGX_HTTP_BAD_REQUEST
                              : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    c = json_pack("{s:{s:s, s:s*, s:s*}}", "reaction", "messageId", mid,
                  "emoji", emoji, "reaction", name);
    if (c == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (emoji) {
        json_object_set_new(c, "emoji", json_string(emoji));
    }

    item = orbit_meta_item(ctx, "message", id);
    if (item == NULL) {
        json_decref(c);
        return ctx->in->error ? NGX_HTTP_BAD_REQUEST
                              : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "type", json_string("reaction"));
    json_object_set_new(item, "content", c);
    json_object_set_new(item, "replyTo", json_string(mid));

    return NGX_OK;
}


/*
 * delivery {mids[]?, watermark} and read {watermark} (Instagram's: {mid}):
 * a status per mid, and one watermark for the contact's conversation.
 */

static ngx_int_t
orbit_meta_delivery(orbit_meta_ctx_t *ctx, json_t *d, const char *status)
{
    size_t       i;
    json_t      *item, *mids, *one, *wm;
    ngx_int_t    rc;
    json_int_t   ts;
    const char  *mid;

    if (!json_is_object(d)) {
        return orbit_meta_bad(ctx, status[0] == 'r' ? "read" : "delivery",
                              "must be an object");
    }

    if (ctx->sender == NULL) {
        return orbit_meta_bad(ctx, "sender.id", "must be an id");
    }

    wm = json_object_get(d, "watermark");

    if (wm && (!json_is_integer(wm) || json_integer_value(wm) < 0)) {
        return orbit_meta_bad(ctx, "watermark", "must be Unix ms");
    }

    ts = ctx->ts >= 0 ? ctx->ts : wm ? json_integer_value(wm) : -1;

    mids = json_object_get(d, "mids");
    mid = json_string_value(json_object_get(d, "mid"));

    if (mid) {
        return orbit_meta_status(ctx, mid, status, ts);
    }

    if (mids && !json_is_array(mids)) {
        return orbit_meta_bad(ctx, "delivery.mids", "must be an array");
    }

    json_array_foreach(mids, i, one) {
        rc = orbit_meta_status(ctx, json_string_value(one), status, ts);
        if (rc != NGX_OK) {
            return rc;
        }
    }

    /* and the watermark: what was sent before it has arrived too */

    if (wm == NULL) {
        return json_array_size(mids)
               ? NGX_OK : orbit_meta_bad(ctx, "watermark", "must be Unix ms");
    }

    item = orbit_channel_item(ctx->in, "status", ctx->kind->name,
                              ctx->account);
    if (item == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "contact", json_pack("{s:s}", "externalId",
                                                   ctx->sender));
    json_object_set(item, "watermark", wm);
    json_object_set_new(item, "status", json_string(status));
    json_object_set_new(item, "timestamp", json_integer(ts / 1000));

    return NGX_OK;
}


/* a status of the message the provider knows as mid */

static ngx_int_t
orbit_meta_status(orbit_meta_ctx_t *ctx, const char *mid, const char *status,
    json_int_t ts)
{
    json_t  *item;

    if (mid == NULL || mid[0] == '\0' || ngx_strlen(mid) > ORBIT_META_ID_MAX)
    {
        return orbit_meta_bad(ctx, "mid", "must be a message id");
    }

    item = orbit_channel_item(ctx->in, "status", ctx->kind->name,
                              ctx->account);
    if (item == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "providerMessageId", json_string(mid));
    json_object_set_new(item, "status", json_string(status));

    if (ts >= 0) {
        json_object_set_new(item, "timestamp", json_integer(ts / 1000));
    }

    return NGX_OK;
}


/* a message item from the event's sender, with the provider's id */

static json_t *
orbit_meta_item(orbit_meta_ctx_t *ctx, const char *kind, const char *id)
{
    json_t  *item;

    if (ctx->sender == NULL) {
        (void) orbit_meta_bad(ctx, "sender.id", "must be an id");
        return NULL;
    }

    item = orbit_channel_item(ctx->in, kind, ctx->kind->name, ctx->account);
    if (item == NULL) {
        return NULL;
    }

    /* a page-scoped id (PSID, IGSID): no phone, no name in the webhook */

    json_object_set_new(item, "contact", json_pack("{s:s}", "externalId",
                                                   ctx->sender));
    json_object_set_new(item, "providerMessageId", json_string(id));

    if (ctx->ts >= 0) {
        json_object_set_new(item, "timestamp", json_integer(ctx->ts / 1000));
    }

    return item;
}


/*
 * An id for an event that has none, the same each time Meta delivers the
 * event: prefix.<sha256 of sender, timestamp, of, what>.
 */

static const char *
orbit_meta_derived_id(orbit_meta_ctx_t *ctx, const char *prefix,
    const char *of, const char *what)
{
    u_char  *key, *p, *id;
    size_t   len;
    char     hex[ORBIT_SHA256_HEX_LEN + 1];

    if (ctx->sender == NULL || ctx->ts < 0) {
        (void) orbit_meta_bad(ctx, "timestamp", "must be Unix ms");
        return NULL;
    }

    len = ngx_strlen(ctx->sender) + NGX_INT64_LEN + ngx_strlen(of)
          + ngx_strlen(what) + 3;

    key = ngx_pnalloc(ctx->in->ar->r->pool, len);
    id = ngx_pnalloc(ctx->in->ar->r->pool,
                     ngx_strlen(prefix) + 1 + ORBIT_SHA256_HEX_LEN + 1);

    if (key == NULL || id == NULL) {
        return NULL;
    }

    p = ngx_sprintf(key, "%s\n%L\n%s\n%s", ctx->sender, (int64_t) ctx->ts,
                    of, what);

    orbit_sha256_hex(hex, key, p - key);

    ngx_sprintf(id, "%s.%s%Z", prefix, hex);

    return (char *) id;
}


static ngx_int_t
orbit_meta_bad(orbit_meta_ctx_t *ctx, const char *what, const char *why)
{
    u_char  *msg;
    size_t   len;

    len = sizeof("entry[].messaging[] ") + 2 * NGX_SIZE_T_LEN
          + ngx_strlen(what) + ngx_strlen(why) + 16;

    msg = ngx_pnalloc(ctx->in->ar->r->pool, len);

    if (msg == NULL) {
        ctx->in->error = "the payload is malformed";

    } else {
        ngx_snprintf(msg, len, "entry[%uz].messaging[%uz] %s%s%s%Z",
                     ctx->entry, ctx->item, what, what[0] ? " " : "", why);
        ctx->in->error = (char *) msg;
    }

    return NGX_HTTP_BAD_REQUEST;
}


/* outbound ------------------------------------------------------------ */


static ngx_int_t
orbit_messenger_send(orbit_channel_out_t *out)
{
    return orbit_meta_send(out, &orbit_meta_messenger);
}


static orbit_send_rc_e
orbit_messenger_sent(orbit_channel_out_t *out)
{
    return orbit_meta_sent(out, &orbit_meta_messenger);
}


static ngx_int_t
orbit_messenger_mark_read(orbit_channel_out_t *out, const char *provider_id)
{
    return orbit_meta_action(out, &orbit_meta_messenger, "mark_seen");
}


static ngx_int_t
orbit_messenger_typing(orbit_channel_out_t *out, ngx_uint_t on)
{
    return orbit_meta_action(out, &orbit_meta_messenger,
                             on ? "typing_on" : "typing_off");
}


static ngx_int_t
orbit_instagram_send(orbit_channel_out_t *out)
{
    return orbit_meta_send(out, &orbit_meta_instagram);
}


static orbit_send_rc_e
orbit_instagram_sent(orbit_channel_out_t *out)
{
    return orbit_meta_sent(out, &orbit_meta_instagram);
}


static ngx_int_t
orbit_instagram_mark_read(orbit_channel_out_t *out, const char *provider_id)
{
    return orbit_meta_action(out, &orbit_meta_instagram, "mark_seen");
}


static ngx_int_t
orbit_instagram_typing(orbit_channel_out_t *out, ngx_uint_t on)
{
    return orbit_meta_action(out, &orbit_meta_instagram,
                             on ? "typing_on" : "typing_off");
}


/*
 * {"recipient":{"id"},"messaging_type","message":{"text"} or
 * {"attachment":{"type","payload":{"url","is_reusable":true}}}}
 */

static ngx_int_t
orbit_meta_send(orbit_channel_out_t *out, const orbit_meta_kind_t *kind)
{
    json_t      *c, *message, *body;
    const char  *type, *url, *att;
    u_char       why[128];

    c = json_object_get(out->message, "content");
    type = json_string_value(json_object_get(out->message, "type"));

    if (type == NULL || out->to == NULL) {
        ngx_snprintf(why, sizeof(why), "The message has no type or no "
                     "recipient on %s%Z", kind->title);
        orbit_channel_error(out, 400, (char *) why);
        return NGX_DECLINED;
    }

    if (ngx_strcmp(type, "text") == 0) {
        message = json_pack("{s:O}", "text", json_object_get(c, "text"));

    } else if (ngx_strcmp(type, "image") == 0
               || ngx_strcmp(type, "video") == 0
               || ngx_strcmp(type, "audio") == 0
               || ngx_strcmp(type, "document") == 0
               || ngx_strcmp(type, "sticker") == 0)
    {
        url = json_string_value(json_object_get(
                  json_object_get(c, "media"), "url"));

        if (url == NULL) {
            orbit_channel_error(out, 400, "The attachment has no URL");
            return NGX_DECLINED;
        }

        /* the Send API has no caption: rather refused than half sent */
        if (json_object_get(c, "caption")) {
            ngx_snprintf(why, sizeof(why), "%s attachments have no caption: "
                         "send the text as its own message%Z", kind->title);
            orbit_channel_error(out, 400, (char *) why);
            return NGX_DECLINED;
        }

        att = ngx_strcmp(type, "document") == 0 ? "file"
              : ngx_strcmp(type, "sticker") == 0 ? "image" : type;

        message = json_pack("{s:{s:s, s:{s:s, s:b}}}", "attachment",
                            "type", att, "payload", "url", url,
                            "is_reusable", 1);

    } else {
        ngx_snprintf(why, sizeof(why), "%s does not send this type%Z",
                     kind->title);
        orbit_channel_error(out, 400, (char *) why);
        return NGX_DECLINED;
    }

    if (message == NULL) {
        return NGX_ERROR;
    }

    body = json_pack("{s:{s:s}, s:s, s:o}", "recipient", "id", out->to,
                     "messaging_type", "RESPONSE", "message", message);
    if (body == NULL) {
        return NGX_ERROR;
    }

    /* outside the 24 hours: an agent's answer, when the page may */
    if (json_is_true(json_object_get(out->config, "humanAgentTag"))) {
        json_object_set_new(body, "messaging_type",
                            json_string("MESSAGE_TAG"));
        json_object_set_new(body, "tag", json_string("HUMAN_AGENT"));
    }

    return orbit_meta_request(out, kind, body);
}


/* {"recipient":{"id"},"sender_action":"mark_seen|typing_on|typing_off"} */

static ngx_int_t
orbit_meta_action(orbit_channel_out_t *out, const orbit_meta_kind_t *kind,
    const char *action)
{
    json_t  *body;

    if (out->to == NULL) {
        orbit_channel_error(out, 400, "The contact has no id on this "
                                      "channel");
        return NGX_DECLINED;
    }

    body = json_pack("{s:{s:s}, s:s}", "recipient", "id", out->to,
                     "sender_action", action);
    if (body == NULL) {
        return NGX_ERROR;
    }

    return orbit_meta_request(out, kind, body);
}


/* POST {api}/{account}/messages, Bearer the connection's token */

static ngx_int_t
orbit_meta_request(orbit_channel_out_t *out, const orbit_meta_kind_t *kind,
    json_t *body)
{
    u_char      *p;
    ngx_str_t   *api;
    const char  *token;
    u_char       why[96];

    static ngx_str_t  graph = ngx_string(ORBIT_META_API);

    token = json_string_value(json_object_get(out->credentials,
                                              "accessToken"));

    if (token == NULL || token[0] == '\0') {
        json_decref(body);
        ngx_snprintf(why, sizeof(why), "The %s connection has no "
                     "credentials.accessToken%Z", kind->title);
        orbit_channel_error(out, 401, (char *) why);
        return NGX_DECLINED;
    }

    if (orbit_channel_body(out, body) != NGX_OK) {
        return NGX_ERROR;
    }

    api = ngx_http_orbit_channel_api_url(kind->name, &graph);

    out->req->url.len = api->len + 1 + ngx_strlen(out->account)
                        + sizeof("/messages") - 1;
    out->req->url.data = ngx_pnalloc(out->pool, out->req->url.len);

    if (out->req->url.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->req->url.data, "%V/%s/messages", api, out->account);
    out->req->url.len = p - out->req->url.data;

    ngx_str_set(&out->req->method, "POST");

    p = ngx_pnalloc(out->pool, sizeof("Bearer ") + ngx_strlen(token));
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, "Bearer %s%Z", token);

    if (orbit_channel_header(out, "Authorization", (char *) p) != NGX_OK
        || orbit_channel_header(out, "Content-Type", "application/json")
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * 200 {"recipient_id","message_id"}: sent (a sender action's answer has
 * no message_id).  Errors: Graph's, read as WhatsApp's.
 */

static orbit_send_rc_e
orbit_meta_sent(orbit_channel_out_t *out, const orbit_meta_kind_t *kind)
{
    json_t           *res;
    ngx_uint_t        status;
    const char       *id;
    orbit_send_rc_e   rc;
    u_char            why[96];

    status = out->req->status;

    res = json_loadb((char *) out->req->response.data,
                     out->req->response.len, 0, NULL);

    if (status >= 200 && status < 300) {
        id = json_string_value(json_object_get(res, "message_id"));

        if (id == NULL) {
            /* a receipt or a typing indicator: no message of ours */
            rc = (json_object_get(out->message, "id") == NULL
                  && json_object_get(res, "recipient_id"))
                 ? ORBIT_SEND_DONE : ORBIT_SEND_RETRY;

            if (rc == ORBIT_SEND_RETRY) {
                ngx_snprintf(why, sizeof(why), "%s answered without a "
                             "message id%Z", kind->title);
                orbit_channel_error(out, (ngx_int_t) status, (char *) why);
            }

            json_decref(res);
            return rc;
        }

        rc = (orbit_channel_provider_id(out, id) == NGX_OK)
             ? ORBIT_SEND_DONE : ORBIT_SEND_RETRY;

        json_decref(res);
        return rc;
    }

    rc = orbit_channel_graph_error(out, res, kind->title);

    json_decref(res);

    return rc;
}
