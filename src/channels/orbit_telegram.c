/*
 * OrbitDesk channels: Telegram Bot API (PROTOCOLS.md §3).
 *
 * A "telegram" connection is one bot: its accountId is the bot's id (the
 * digits before ":" in credentials.botToken).  Its updates come to
 *
 *   POST /api/v1/channels/telegram/{botId}/webhook
 *
 * with X-Telegram-Bot-Api-Secret-Token, the secret our setWebhook gave
 * Telegram (connect, run by the channel.setup job).  The secret is not
 * stored: it is HMAC-SHA256(ENCRYPTION_KEY, "orbit telegram webhook:" +
 * botToken) in hex, so verify and connect derive the same one from the
 * credentials the pipeline opened, a new token gets a new secret, and the
 * secret tells nothing of the token.
 *
 * Ids: Telegram numbers messages per chat, so a message's provider id is
 * "{chat id}:{message_id}", inbound and outbound alike: a redelivered
 * update is the same message once (the pipeline's dedupe), and a reply
 * finds the message_id its reply_parameters need.  An edit is a message
 * of its own, "{chat id}:{message_id}:e{edit_date}", a reply to the one
 * it edits, with content.edited.  Private chats only: updates from
 * groups and channels are taken (200) and not stored.
 *
 * Outbound: POST {api}/bot{TOKEN}/sendMessage (sendPhoto, sendDocument,
 * ...), {api} being orbit_channel_api telegram or api.telegram.org.
 * Telegram has no delivery or read statuses: sent is final.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"


#define ORBIT_TG_API          "https://api.telegram.org"
#define ORBIT_TG_FILE_MAX     (20 * 1024 * 1024)   /* getFile's limit */
#define ORBIT_TG_TEXT_MAX     4096                 /* characters */
#define ORBIT_TG_CAPTION_MAX  1024
#define ORBIT_TG_TOKEN_MAX    128
#define ORBIT_TG_SECRET_TAG   "orbit telegram webhook:"
#define ORBIT_TG_HEADER       "X-Telegram-Bot-Api-Secret-Token"


static ngx_int_t orbit_tg_verify(orbit_channel_in_t *in);
static ngx_int_t orbit_tg_normalize(orbit_channel_in_t *in);
static ngx_int_t orbit_tg_message(orbit_channel_in_t *in, json_t *msg,
    ngx_uint_t edited);
static json_t *orbit_tg_content(json_t *msg, const char **type);
static json_t *orbit_tg_media(json_t *file, const char *mime);
static json_t *orbit_tg_contact(json_t *c);
static json_t *orbit_tg_name(json_t *from);
static ngx_int_t orbit_tg_send(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_tg_sent(orbit_channel_out_t *out);
static ngx_int_t orbit_tg_connect(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_tg_connected(orbit_channel_out_t *out);
static ngx_int_t orbit_tg_media_locate(orbit_channel_out_t *out,
    json_t *media);
static ngx_int_t orbit_tg_media_located(orbit_channel_out_t *out);
static json_t *orbit_tg_outbound(orbit_channel_out_t *out,
    const char **method);
static orbit_send_rc_e orbit_tg_answer(orbit_channel_out_t *out,
    json_t **result);
static ngx_int_t orbit_tg_request(orbit_channel_out_t *out,
    const char *method, json_t *body);
static ngx_int_t orbit_tg_url(orbit_channel_out_t *out, orbit_http_req_t *req,
    const char *prefix, const char *token, const char *path,
    ngx_str_t *query);
static const char *orbit_tg_token(json_t *credentials, const char *account);
static ngx_int_t orbit_tg_secret(const char *token, char *secret);
static json_t *orbit_tg_chat_id(const char *to);
static ngx_int_t orbit_tg_id(ngx_pool_t *pool, json_t *chat, json_t *msg,
    const char *suffix, char **id);


const orbit_channel_t  orbit_channel_telegram = {
    "telegram",
    "telegram",
    NULL,
    orbit_tg_verify,
    orbit_tg_normalize,
    orbit_tg_send,
    orbit_tg_sent,
    NULL,
    orbit_tg_connect,
    orbit_tg_connected,
    orbit_tg_media_locate,
    orbit_tg_media_located,
    ORBIT_CHANNEL_KEYED,
    NULL,
};


/* the secret setWebhook gave, from the connection's token */

static ngx_int_t
orbit_tg_verify(orbit_channel_in_t *in)
{
    const char       *token;
    ngx_table_elt_t  *h;
    char              secret[ORBIT_SHA256_HEX_LEN + 1];

    token = orbit_tg_token(in->credentials, in->account);

    if (token == NULL) {
        in->error = "this connection has no bot token of this bot";
        return NGX_HTTP_FORBIDDEN;
    }

    if (orbit_tg_secret(token, secret) != NGX_OK) {
        in->error = "Telegram webhooks are not configured here";
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    h = orbit_header_in(in->ar->r, ORBIT_TG_HEADER);

    if (h == NULL) {
        in->error = ORBIT_TG_HEADER " is missing";
        return NGX_HTTP_FORBIDDEN;
    }

    if (!orbit_equal(h->value.data, h->value.len, secret,
                     ORBIT_SHA256_HEX_LEN))
    {
        ngx_explicit_memzero(secret, sizeof(secret));
        in->error = ORBIT_TG_HEADER " does not match";
        return NGX_HTTP_FORBIDDEN;
    }

    ngx_explicit_memzero(secret, sizeof(secret));

    return NGX_OK;
}


/*
 * An Update: message and edited_message are stored; the other kinds
 * (callback queries, member changes: not asked for by our setWebhook)
 * are taken and dropped, since a refusal would only make Telegram retry.
 */

static ngx_int_t
orbit_tg_normalize(orbit_channel_in_t *in)
{
    json_t        *root, *msg;
    ngx_int_t      rc;
    json_error_t   err;

    root = json_loadb((char *) in->body.data, in->body.len, 0, &err);

    if (!json_is_object(root)) {
        json_decref(root);
        in->error = "the body must be a Telegram Update (a JSON object)";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (!json_is_integer(json_object_get(root, "update_id"))) {
        json_decref(root);
        in->error = "update_id must be an integer";
        return NGX_HTTP_BAD_REQUEST;
    }

    rc = NGX_OK;

    msg = json_object_get(root, "message");
    if (msg) {
        rc = orbit_tg_message(in, msg, 0);
    }

    msg = json_object_get(root, "edited_message");
    if (msg && rc == NGX_OK) {
        rc = orbit_tg_message(in, msg, 1);
    }

    json_decref(root);

    return rc;
}


static ngx_int_t
orbit_tg_message(orbit_channel_in_t *in, json_t *msg, ngx_uint_t edited)
{
    char        *id, *reply, *ext, suffix[NGX_INT64_LEN + 3];
    json_t      *chat, *from, *item, *contact, *content, *v;
    const char  *kind, *type;

    chat = json_object_get(msg, "chat");
    from = json_object_get(msg, "from");
    kind = json_string_value(json_object_get(chat, "type"));

    if (!json_is_object(msg) || !json_is_integer(json_object_get(chat, "id"))
        || kind == NULL
        || !json_is_integer(json_object_get(msg, "message_id"))
        || !json_is_integer(json_object_get(msg, "date")))
    {
        in->error = "a message must have message_id, date and chat "
                    "{id, type}";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_strcmp(kind, "private") != 0) {
        return NGX_OK;          /* groups and channels: not handled */
    }

    if (edited && !json_is_integer(json_object_get(msg, "edit_date"))) {
        in->error = "an edited_message must have edit_date";
        return NGX_HTTP_BAD_REQUEST;
    }

    content = orbit_tg_content(msg, &type);
    if (content == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (type == NULL) {
        json_decref(content);
        return NGX_OK;          /* a service message: nothing to show */
    }

    reply = NULL;

    if (edited) {
        ngx_sprintf((u_char *) suffix, ":e%L%Z",
                    (int64_t) json_integer_value(json_object_get(msg,
                                                             "edit_date")));
        json_object_set_new(content, "edited", json_true());

        if (orbit_tg_id(in->ar->r->pool, chat, msg, NULL, &reply) != NGX_OK)
        {
            json_decref(content);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

    } else {
        suffix[0] = '\0';
        v = json_object_get(msg, "reply_to_message");

        if (json_is_integer(json_object_get(v, "message_id"))
            && orbit_tg_id(in->ar->r->pool, chat, v, NULL, &reply) != NGX_OK)
        {
            json_decref(content);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (orbit_tg_id(in->ar->r->pool, chat, msg, suffix, &id) != NGX_OK) {
        json_decref(content);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the contact is the chat: in a private chat, the user's id */

    ext = ngx_pnalloc(in->ar->r->pool, NGX_INT64_LEN + 1);
    item = orbit_channel_item(in, "message", "telegram", in->account);
    contact = orbit_tg_name(json_is_object(from) ? from : chat);

    if (ext == NULL || item == NULL || contact == NULL) {
        json_decref(content);
        json_decref(contact);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf((u_char *) ext, "%L%Z",
                (int64_t) json_integer_value(json_object_get(chat, "id")));

    json_object_set_new(contact, "externalId", json_string(ext));
    json_object_set_new(item, "contact", contact);
    json_object_set_new(item, "providerMessageId", json_string(id));
    json_object_set_new(item, "type", json_string(type));
    json_object_set_new(item, "content", content);
    json_object_set(item, "timestamp", json_object_get(msg, "date"));

    if (reply) {
        json_object_set_new(item, "replyTo", json_string(reply));
    }

    return NGX_OK;
}


/*
 * The message's content in the inbox's shape (WhatsApp's): "text", or
 * the type's object with "caption"; media as {provider, id: file_id,
 * ...} for the media.fetch job.  *type NULL: nothing a person wrote (a
 * service message).
 */

static json_t *
orbit_tg_content(json_t *msg, const char **type)
{
    json_t      *c, *v, *m, *loc;
    size_t       n;
    const char  *s;

    static const char  *unsupported[] = {
        "poll", "dice", "game", "story", "invoice", "paid_media",
        "giveaway", NULL
    };

    c = json_object();
    if (c == NULL) {
        return NULL;
    }

    *type = NULL;
    m = NULL;

    if (json_is_string(json_object_get(msg, "text"))) {
        *type = "text";
        json_object_set(c, "text", json_object_get(msg, "text"));

    } else if (json_is_array(json_object_get(msg, "photo"))) {
        /* one PhotoSize per size, the largest last */
        v = json_object_get(msg, "photo");
        n = json_array_size(v);
        *type = "image";
        m = orbit_tg_media(json_array_get(v, n ? n - 1 : 0), "image/jpeg");

    } else if ((v = json_object_get(msg, "animation")) != NULL
               || (v = json_object_get(msg, "video")) != NULL
               || (v = json_object_get(msg, "video_note")) != NULL)
    {
        *type = "video";
        m = orbit_tg_media(v, "video/mp4");

    } else if ((v = json_object_get(msg, "voice")) != NULL) {
        *type = "audio";
        m = orbit_tg_media(v, "audio/ogg");
        if (m) {
            json_object_set_new(m, "voice", json_true());
        }

    } else if ((v = json_object_get(msg, "audio")) != NULL) {
        *type = "audio";
        m = orbit_tg_media(v, NULL);

    } else if ((v = json_object_get(msg, "document")) != NULL) {
        *type = "document";
        m = orbit_tg_media(v, NULL);

    } else if ((v = json_object_get(msg, "sticker")) != NULL) {
        *type = "sticker";
        m = orbit_tg_media(v, json_is_true(json_object_get(v, "is_animated"))
                              ? "application/x-tgsticker"
                              : json_is_true(json_object_get(v, "is_video"))
                              ? "video/webm" : "image/webp");
        if (m) {
            json_object_set_new(m, "animated",
                     json_boolean(json_is_true(json_object_get(v,
                                                   "is_animated"))
                                  || json_is_true(json_object_get(v,
                                                      "is_video"))));
        }

        s = json_string_value(json_object_get(v, "emoji"));
        if (s) {
            json_object_set_new(c, "emoji", json_string(s));
        }

    } else if ((v = json_object_get(msg, "location")) != NULL
               || (v = json_object_get(msg, "venue")) != NULL)
    {
        loc = json_object_get(v, "location");
        loc = json_is_object(loc) ? loc : v;

        if (json_is_number(json_object_get(loc, "latitude"))
            && json_is_number(json_object_get(loc, "longitude")))
        {
            *type = "location";
            loc = json_pack("{s:O, s:O}",
                            "latitude", json_object_get(loc, "latitude"),
                            "longitude", json_object_get(loc, "longitude"));

            if (loc && json_is_string(json_object_get(v, "title"))) {
                json_object_set(loc, "name", json_object_get(v, "title"));
            }

            if (loc && json_is_string(json_object_get(v, "address"))) {
                json_object_set(loc, "address",
                                json_object_get(v, "address"));
            }

            json_object_set_new(c, "location", loc);
        }

    } else if ((v = json_object_get(msg, "contact")) != NULL) {
        *type = "contacts";
        json_object_set_new(c, "contacts", orbit_tg_contact(v));

    } else {
        for (n = 0; unsupported[n]; n++) {
            if (json_object_get(msg, unsupported[n])) {
                *type = "unsupported";
                json_object_set_new(c, "unsupported", json_pack("{s:s}",
                                    "type", unsupported[n]));
                break;
            }
        }
    }

    if (m) {
        json_object_set_new(c, "media", m);
    }

    if (*type && ngx_strcmp(*type, "text") != 0
        && json_is_string(json_object_get(msg, "caption")))
    {
        json_object_set(c, "caption", json_object_get(msg, "caption"));
    }

    /* a file without its file_id: kept as what it is not */

    if (*type && json_object_get(c, "text") == NULL
        && (ngx_strcmp(*type, "image") == 0 || ngx_strcmp(*type, "video") == 0
            || ngx_strcmp(*type, "audio") == 0
            || ngx_strcmp(*type, "document") == 0
            || ngx_strcmp(*type, "sticker") == 0)
        && m == NULL)
    {
        json_object_clear(c);
        *type = "unsupported";
        json_object_set_new(c, "unsupported", json_pack("{s:s}",
                            "type", "file"));
    }

    return c;
}


/* a File: {provider, id: file_id, mimeType?, filename?, size?, ...} */

static json_t *
orbit_tg_media(json_t *file, const char *mime)
{
    json_t      *m;
    const char  *s;

    s = json_string_value(json_object_get(file, "file_id"));
    if (s == NULL || s[0] == '\0') {
        return NULL;
    }

    m = json_pack("{s:s, s:s}", "provider", "telegram", "id", s);
    if (m == NULL) {
        return NULL;
    }

    s = json_string_value(json_object_get(file, "mime_type"));
    if (s || mime) {
        json_object_set_new(m, "mimeType", json_string(s ? s : mime));
    }

    s = json_string_value(json_object_get(file, "file_name"));
    if (s) {
        json_object_set_new(m, "filename", json_string(s));
    }

    s = json_string_value(json_object_get(file, "file_unique_id"));
    if (s) {
        json_object_set_new(m, "uniqueId", json_string(s));
    }

    if (json_is_integer(json_object_get(file, "file_size"))) {
        json_object_set(m, "size", json_object_get(file, "file_size"));
    }

    if (json_is_integer(json_object_get(file, "width"))) {
        json_object_set(m, "width", json_object_get(file, "width"));
        json_object_set(m, "height", json_object_get(file, "height"));
    }

    if (json_is_integer(json_object_get(file, "duration"))) {
        json_object_set(m, "duration", json_object_get(file, "duration"));
    }

    return m;
}


/* a shared Contact, as WhatsApp's contacts[] */

static json_t *
orbit_tg_contact(json_t *c)
{
    json_t  *name, *one, *phones;

    name = orbit_tg_name(c);
    one = json_object();
    phones = json_array();

    if (name == NULL || one == NULL || phones == NULL) {
        json_decref(name);
        json_decref(one);
        json_decref(phones);
        return NULL;
    }

    if (json_object_get(name, "name")) {
        json_object_set_new(name, "formatted_name",
                            json_deep_copy(json_object_get(name, "name")));
        json_object_del(name, "name");
    }

    if (json_is_string(json_object_get(c, "first_name"))) {
        json_object_set(name, "first_name", json_object_get(c, "first_name"));
    }

    if (json_is_string(json_object_get(c, "last_name"))) {
        json_object_set(name, "last_name", json_object_get(c, "last_name"));
    }

    if (json_is_string(json_object_get(c, "phone_number"))) {
        json_array_append_new(phones, json_pack("{s:O}", "phone",
                              json_object_get(c, "phone_number")));
    }

    json_object_set_new(one, "name", name);
    json_object_set_new(one, "phones", phones);

    if (json_is_integer(json_object_get(c, "user_id"))) {
        json_object_set(one, "userId", json_object_get(c, "user_id"));
    }

    if (json_is_string(json_object_get(c, "vcard"))) {
        json_object_set(one, "vcard", json_object_get(c, "vcard"));
    }

    return json_pack("[o]", one);
}


/* {"name": "First Last"} (else the username, a chat's title), or {} */

static json_t *
orbit_tg_name(json_t *from)
{
    json_t      *o;
    u_char      *p, buf[404];
    const char  *first, *last;

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    first = json_string_value(json_object_get(from, "first_name"));
    last = json_string_value(json_object_get(from, "last_name"));

    if (first && last && ngx_strlen(first) + ngx_strlen(last) < 400) {
        p = ngx_sprintf(buf, "%s %s%Z", first, last);
        json_object_set_new(o, "name", json_stringn((char *) buf,
                                                    p - buf - 1));

    } else if (first || last) {
        json_object_set_new(o, "name", json_string(first ? first : last));

    } else if (json_is_string(json_object_get(from, "username"))) {
        json_object_set(o, "name", json_object_get(from, "username"));

    } else if (json_is_string(json_object_get(from, "title"))) {
        json_object_set(o, "name", json_object_get(from, "title"));
    }

    return o;
}


/* "{chat id}:{message_id}{suffix}" in pool */

static ngx_int_t
orbit_tg_id(ngx_pool_t *pool, json_t *chat, json_t *msg, const char *suffix,
    char **id)
{
    u_char  *p;

    p = ngx_pnalloc(pool, 2 * NGX_INT64_LEN + 2
                          + (suffix ? ngx_strlen(suffix) : 0) + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, "%L:%L%s%Z",
                (int64_t) json_integer_value(json_object_get(chat, "id")),
                (int64_t) json_integer_value(json_object_get(msg,
                                                             "message_id")),
                suffix ? suffix : "");

    *id = (char *) p;

    return NGX_OK;
}


/* outbound ------------------------------------------------------------ */


static ngx_int_t
orbit_tg_send(orbit_channel_out_t *out)
{
    json_t      *body;
    const char  *method;

    body = orbit_tg_outbound(out, &method);
    if (body == NULL) {
        return out->error.len ? NGX_DECLINED : NGX_ERROR;
    }

    return orbit_tg_request(out, method, body);
}


/*
 * Our message as a Bot API call: the method and its body; NULL with
 * out->error when it cannot go to Telegram.  Text longer than Telegram
 * takes is refused, not split: one message, one provider id.
 */

static json_t *
orbit_tg_outbound(orbit_channel_out_t *out, const char **method)
{
    json_t      *c, *body, *media, *chat, *loc;
    const char  *type, *text, *url, *field, *p;
    ngx_int_t    reply;

    c = json_object_get(out->message, "content");
    type = json_string_value(json_object_get(out->message, "type"));

    if (type == NULL || out->to == NULL) {
        orbit_channel_error(out, 400, "The message has no type or no "
                                      "recipient on Telegram");
        return NULL;
    }

    chat = orbit_tg_chat_id(out->to);
    if (chat == NULL) {
        return NULL;
    }

    body = json_pack("{s:o}", "chat_id", chat);
    if (body == NULL) {
        return NULL;
    }

    field = NULL;

    if (ngx_strcmp(type, "text") == 0) {
        *method = "sendMessage";
        text = json_string_value(json_object_get(c, "text"));

        if (text == NULL || text[0] == '\0'
            || orbit_utf8_chars(text, ngx_strlen(text)) > ORBIT_TG_TEXT_MAX)
        {
            json_decref(body);
            orbit_channel_error(out, 400, "Telegram takes a text of 1 to "
                                          "4096 characters");
            return NULL;
        }

        json_object_set_new(body, "text", json_string(text));

    } else if (ngx_strcmp(type, "image") == 0) {
        *method = "sendPhoto";
        field = "photo";

    } else if (ngx_strcmp(type, "video") == 0) {
        *method = "sendVideo";
        field = "video";

    } else if (ngx_strcmp(type, "document") == 0) {
        *method = "sendDocument";
        field = "document";

    } else if (ngx_strcmp(type, "sticker") == 0) {
        *method = "sendSticker";
        field = "sticker";

    } else if (ngx_strcmp(type, "audio") == 0) {
        /* OGG (Opus) plays as a voice note, the rest as music */
        media = json_object_get(c, "media");
        text = json_string_value(json_object_get(media, "mimeType"));

        if (text && ngx_strncasecmp((u_char *) text, (u_char *) "audio/ogg",
                                    sizeof("audio/ogg") - 1) == 0)
        {
            *method = "sendVoice";
            field = "voice";

        } else {
            *method = "sendAudio";
            field = "audio";
        }

    } else if (ngx_strcmp(type, "location") == 0) {
        *method = "sendLocation";
        loc = json_object_get(c, "location");

        if (!json_is_number(json_object_get(loc, "latitude"))
            || !json_is_number(json_object_get(loc, "longitude")))
        {
            json_decref(body);
            orbit_channel_error(out, 400, "The location has no latitude or "
                                          "longitude");
            return NULL;
        }

        json_object_set(body, "latitude", json_object_get(loc, "latitude"));
        json_object_set(body, "longitude",
                        json_object_get(loc, "longitude"));

    } else {
        json_decref(body);
        orbit_channel_error(out, 400, "Telegram does not send this type");
        return NULL;
    }

    if (field) {
        url = json_string_value(json_object_get(json_object_get(c, "media"),
                                                "url"));

        if (url == NULL
            || (ngx_strncmp(url, "https://", 8) != 0
                && ngx_strncmp(url, "http://", 7) != 0))
        {
            json_decref(body);
            orbit_channel_error(out, 400, "Telegram sends media by an "
                                          "http(s) URL: content.media.url");
            return NULL;
        }

        json_object_set_new(body, field, json_string(url));

        text = json_string_value(json_object_get(c, "caption"));

        if (text && text[0] && ngx_strcmp(field, "sticker") != 0) {
            if (orbit_utf8_chars(text, ngx_strlen(text))
                > ORBIT_TG_CAPTION_MAX)
            {
                json_decref(body);
                orbit_channel_error(out, 400, "Telegram takes a caption of "
                                              "at most 1024 characters");
                return NULL;
            }

            json_object_set_new(body, "caption", json_string(text));
        }
    }

    /* "{chat}:{message_id}[:e{edit}]" -> message_id */

    if (out->reply_to) {
        p = ngx_strchr(out->reply_to, ':');
        reply = NGX_ERROR;

        if (p) {
            url = ngx_strchr(p + 1, ':');
            reply = ngx_atoi((u_char *) p + 1,
                             url ? (size_t) (url - p - 1)
                                 : ngx_strlen(p + 1));
        }

        if (reply > 0) {
            json_object_set_new(body, "reply_parameters",
                                json_pack("{s:I, s:b}", "message_id",
                                          (json_int_t) reply,
                                          "allow_sending_without_reply", 1));
        }
    }

    return body;
}


/* {"ok":true,"result":Message}: sent as "{chat id}:{message_id}" */

static orbit_send_rc_e
orbit_tg_sent(orbit_channel_out_t *out)
{
    char             *id;
    json_t           *result, *chat;
    orbit_send_rc_e   rc;

    rc = orbit_tg_answer(out, &result);
    if (rc != ORBIT_SEND_DONE) {
        return rc;
    }

    chat = json_object_get(result, "chat");

    if (!json_is_integer(json_object_get(result, "message_id"))
        || !json_is_integer(json_object_get(chat, "id")))
    {
        json_decref(result);
        orbit_channel_error(out, (ngx_int_t) out->req->status,
                            "Telegram answered without a message");
        return ORBIT_SEND_RETRY;
    }

    if (orbit_tg_id(out->pool, chat, result, NULL, &id) != NGX_OK
        || orbit_channel_provider_id(out, id) != NGX_OK)
    {
        json_decref(result);
        return ORBIT_SEND_RETRY;
    }

    json_decref(result);

    return ORBIT_SEND_DONE;
}


/*
 * The channel.setup job: setWebhook with our URL and the secret Telegram
 * will send back with every update.
 */

static ngx_int_t
orbit_tg_connect(orbit_channel_out_t *out)
{
    u_char      *p;
    json_t      *body;
    ngx_str_t   *pub;
    const char  *token;
    char         secret[ORBIT_SHA256_HEX_LEN + 1];

    token = orbit_tg_token(out->credentials, NULL);

    if (token == NULL) {
        orbit_channel_error(out, 400, "credentials.botToken must be a bot "
                                      "token, <bot id>:<secret>");
        return NGX_DECLINED;
    }

    if (orbit_tg_token(out->credentials, out->account) == NULL) {
        orbit_channel_error(out, 400, "credentials.botToken is another "
                                      "bot's than accountId's");
        return NGX_DECLINED;
    }

    pub = ngx_http_orbit_public_url();

    if (pub == NULL) {
        orbit_channel_error(out, 503, "orbit_public_url is not set: "
                                      "Telegram cannot reach the webhook");
        return NGX_DECLINED;
    }

    if (orbit_tg_secret(token, secret) != NGX_OK) {
        orbit_channel_error(out, 503, "orbit_secrets has no "
                                      "ENCRYPTION_KEY");
        return NGX_DECLINED;
    }

    p = ngx_pnalloc(out->pool, pub->len + ngx_strlen(out->account)
                               + sizeof("/api/v1/channels/telegram//webhook"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, "%V/api/v1/channels/telegram/%s/webhook%Z", pub,
                out->account);

    body = json_pack("{s:s, s:s, s:[ss]}", "url", (char *) p,
                     "secret_token", secret,
                     "allowed_updates", "message", "edited_message");

    ngx_explicit_memzero(secret, sizeof(secret));

    if (body == NULL) {
        return NGX_ERROR;
    }

    return orbit_tg_request(out, "setWebhook", body);
}


static orbit_send_rc_e
orbit_tg_connected(orbit_channel_out_t *out)
{
    json_t           *result;
    orbit_send_rc_e   rc;

    rc = orbit_tg_answer(out, &result);
    json_decref(result);

    return rc;
}


/* media.fetch: getFile locates the file, then its download */

static ngx_int_t
orbit_tg_media_locate(orbit_channel_out_t *out, json_t *media)
{
    u_char      *p;
    size_t       len;
    ngx_str_t    query;
    const char  *token, *id;

    token = orbit_tg_token(out->credentials, out->account);
    id = json_string_value(json_object_get(media, "id"));

    if (token == NULL) {
        orbit_channel_error(out, 401, "The Telegram connection has no "
                                      "credentials.botToken of its bot");
        return NGX_DECLINED;
    }

    if (id == NULL || id[0] == '\0' || ngx_strlen(id) > 1024) {
        orbit_channel_error(out, 400, "The media has no Telegram file_id");
        return NGX_DECLINED;
    }

    if (json_integer_value(json_object_get(media, "size")) > ORBIT_TG_FILE_MAX)
    {
        orbit_channel_error(out, 413, "Telegram's bots download files of "
                                      "at most 20 MB");
        return NGX_DECLINED;
    }

    len = ngx_strlen(id);
    len += 2 * ngx_escape_uri(NULL, (u_char *) id, len, NGX_ESCAPE_ARGS);

    query.data = ngx_pnalloc(out->pool, sizeof("file_id=") - 1 + len);
    if (query.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(query.data, "file_id=", sizeof("file_id=") - 1);
    p = (u_char *) ngx_escape_uri(p, (u_char *) id, ngx_strlen(id),
                                  NGX_ESCAPE_ARGS);
    query.len = p - query.data;

    if (orbit_tg_url(out, out->req, "bot", token, "getFile", &query)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&out->req->method, "GET");

    return NGX_OK;
}


/*
 * {"ok":true,"result":{"file_path","file_size"?}}: out->req becomes the
 * download, {api}/file/bot{TOKEN}/{file_path}, with the locating
 * request's timeout, limit and handler.
 */

static ngx_int_t
orbit_tg_media_located(orbit_channel_out_t *out)
{
    json_t            *result;
    const char        *token, *path;
    orbit_send_rc_e    rc;
    orbit_http_req_t  *req;

    token = orbit_tg_token(out->credentials, out->account);
    if (token == NULL) {
        orbit_channel_error(out, 401, "The Telegram connection has no "
                                      "credentials.botToken of its bot");
        return NGX_DECLINED;
    }

    rc = orbit_tg_answer(out, &result);

    if (rc != ORBIT_SEND_DONE) {
        return (rc == ORBIT_SEND_RETRY) ? NGX_ERROR : NGX_DECLINED;
    }

    path = json_string_value(json_object_get(result, "file_path"));

    if (json_integer_value(json_object_get(result, "file_size"))
        > ORBIT_TG_FILE_MAX
        || (path == NULL && json_object_get(result, "file_size")))
    {
        json_decref(result);
        orbit_channel_error(out, 413, "Telegram's bots download files of "
                                      "at most 20 MB");
        return NGX_DECLINED;
    }

    if (path == NULL || path[0] == '\0' || ngx_strstr(path, "..")) {
        json_decref(result);
        orbit_channel_error(out, 502, "Telegram gave no file_path");
        return NGX_DECLINED;
    }

    req = orbit_http_req_create(out->pool);
    if (req == NULL
        || orbit_tg_url(out, req, "file/bot", token, path, NULL) != NGX_OK)
    {
        json_decref(result);
        return NGX_ERROR;
    }

    json_decref(result);

    req->timeout = out->req->timeout;
    req->max_response = out->req->max_response;
    req->handler = out->req->handler;
    req->data = out->req->data;
    ngx_str_set(&req->method, "GET");

    out->req = req;

    return NGX_OK;
}


/*
 * The Bot API's answer: {"ok":true,"result":...} (*result, a reference
 * to release) is done; {"ok":false,"error_code","description",
 * "parameters":{"retry_after"}} is retried when throttled (after
 * retry_after), on 5xx or no answer, and failed otherwise with Telegram's
 * error_code and description.
 */

static orbit_send_rc_e
orbit_tg_answer(orbit_channel_out_t *out, json_t **result)
{
    json_t      *res, *after;
    ngx_int_t    code;
    ngx_uint_t   status;
    const char  *why;

    *result = NULL;
    status = out->req->status;

    res = json_loadb((char *) out->req->response.data,
                     out->req->response.len, 0, NULL);

    if (status >= 200 && status < 300
        && json_is_true(json_object_get(res, "ok")))
    {
        *result = json_incref(json_object_get(res, "result"));
        json_decref(res);
        return ORBIT_SEND_DONE;
    }

    code = json_is_integer(json_object_get(res, "error_code"))
           ? (ngx_int_t) json_integer_value(json_object_get(res,
                                                            "error_code"))
           : (ngx_int_t) status;
    why = json_string_value(json_object_get(res, "description"));

    orbit_channel_error(out, code, why ? why
                                       : status ? "Telegram refused it"
                                                : "Telegram did not answer");

    after = json_object_get(json_object_get(res, "parameters"),
                            "retry_after");

    if (json_is_integer(after) && json_integer_value(after) > 0
        && json_integer_value(after) < 3600)
    {
        out->retry_after = (ngx_msec_t) json_integer_value(after) * 1000;
    }

    json_decref(res);

    if (status == 0 || status == 429 || code == 429 || status >= 500) {
        return ORBIT_SEND_RETRY;
    }

    return ORBIT_SEND_FAIL;
}


/* POST {api}/bot{TOKEN}/{method}, the body as JSON */

static ngx_int_t
orbit_tg_request(orbit_channel_out_t *out, const char *method, json_t *body)
{
    const char  *token;

    token = orbit_tg_token(out->credentials, out->account);

    if (token == NULL) {
        json_decref(body);
        orbit_channel_error(out, 401, "The Telegram connection has no "
                                      "credentials.botToken of its bot");
        return NGX_DECLINED;
    }

    if (orbit_channel_body(out, body) != NGX_OK
        || orbit_tg_url(out, out->req, "bot", token, method, NULL) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&out->req->method, "POST");

    return orbit_channel_header(out, "Content-Type", "application/json");
}


/* {api}/{prefix}{token}/{path}[?query] as req's URL */

static ngx_int_t
orbit_tg_url(orbit_channel_out_t *out, orbit_http_req_t *req,
    const char *prefix, const char *token, const char *path,
    ngx_str_t *query)
{
    u_char     *p;
    ngx_str_t  *api;

    static ngx_str_t  telegram = ngx_string(ORBIT_TG_API);

    api = ngx_http_orbit_channel_api_url("telegram", &telegram);

    req->url.len = api->len + ngx_strlen(prefix) + ngx_strlen(token)
                   + ngx_strlen(path) + 3 + (query ? query->len : 0);
    req->url.data = ngx_pnalloc(out->pool, req->url.len);

    if (req->url.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(req->url.data, "%V/%s%s/%s", api, prefix, token, path);

    if (query) {
        p = ngx_sprintf(p, "?%V", query);
    }

    req->url.len = p - req->url.data;

    return NGX_OK;
}


/*
 * credentials.botToken when it is a token ("123456:AA..."), and, given
 * an account, that account's bot's; else NULL.
 */

static const char *
orbit_tg_token(json_t *credentials, const char *account)
{
    size_t       i, len, id;
    const char  *token;

    token = json_string_value(json_object_get(credentials, "botToken"));
    if (token == NULL) {
        return NULL;
    }

    len = ngx_strlen(token);

    for (id = 0; id < len && token[id] >= '0' && token[id] <= '9'; id++) {
        /* the bot's id */
    }

    if (id == 0 || id > 20 || id + 1 >= len || token[id] != ':'
        || len > ORBIT_TG_TOKEN_MAX)
    {
        return NULL;
    }

    for (i = id + 1; i < len; i++) {
        if (!((token[i] >= 'A' && token[i] <= 'Z')
              || (token[i] >= 'a' && token[i] <= 'z')
              || (token[i] >= '0' && token[i] <= '9')
              || token[i] == '_' || token[i] == '-'))
        {
            return NULL;
        }
    }

    if (account
        && (ngx_strlen(account) != id
            || ngx_strncmp(account, token, id) != 0))
    {
        return NULL;
    }

    return token;
}


/* hex HMAC-SHA256(ENCRYPTION_KEY, tag + token): 64 of [0-9a-f] */

static ngx_int_t
orbit_tg_secret(const char *token, char *secret)
{
    size_t            len;
    orbit_secrets_t  *secrets;
    u_char            data[sizeof(ORBIT_TG_SECRET_TAG) + ORBIT_TG_TOKEN_MAX];

    secrets = ngx_http_orbit_secrets();
    len = ngx_strlen(token);

    if (secrets == NULL || !secrets->has_encryption_key
        || len > ORBIT_TG_TOKEN_MAX)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(data, ORBIT_TG_SECRET_TAG, sizeof(ORBIT_TG_SECRET_TAG) - 1);
    ngx_memcpy(data + sizeof(ORBIT_TG_SECRET_TAG) - 1, token, len);
    len += sizeof(ORBIT_TG_SECRET_TAG) - 1;

    if (orbit_hmac_sha256_hex(secret, secrets->encryption_key,
                              sizeof(secrets->encryption_key), data, len)
        != 0)
    {
        ngx_explicit_memzero(data, sizeof(data));
        return NGX_ERROR;
    }

    ngx_explicit_memzero(data, sizeof(data));

    return NGX_OK;
}


/* a chat id as Telegram's integer (an "@channel" name as it is) */

static json_t *
orbit_tg_chat_id(const char *to)
{
    size_t       i, len;
    long long    n;

    len = ngx_strlen(to);

    for (i = (to[0] == '-'); i < len; i++) {
        if (to[i] < '0' || to[i] > '9') {
            return json_string(to);
        }
    }

    if (len == 0 || len > 20 || (to[0] == '-' && len == 1)) {
        return json_string(to);
    }

    n = strtoll(to, NULL, 10);

    return json_integer((json_int_t) n);
}
