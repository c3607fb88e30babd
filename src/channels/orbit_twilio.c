/*
 * OrbitDesk channels: Twilio SMS (PROTOCOLS.md section 4), the
 * conversations' channel "sms".
 *
 * A connection (channel "sms") is one Twilio number, its accountId the
 * number in E.164, or one Messaging Service, its accountId the service's
 * SID (MG...); credentials {accountSid, authToken, apiKeySid?,
 * apiKeySecret?}.  Twilio posts its form webhooks (messages to the number
 * and the statuses of ours) to
 *
 *   POST /api/v1/channels/twilio/{accountId}/webhook
 *
 * signed in X-Twilio-Signature with the account's auth token over the
 * URL it requested: orbit_public_url and the request's URI when set (TLS
 * ends before us), else the scheme, Host and URI of the request.  The
 * answer is an empty TwiML <Response/>.  The path names the provider
 * (whose console holds it) and orbit_channel_api twilio names its API;
 * the conversations' channel stays "sms".
 *
 * Inbound: From is the contact (externalId, and phone when E.164), Body
 * the text, MessageSid the provider's id.  Media: the first MediaUrl{i}
 * is content.media {provider: "twilio", url, mimeType}, for the
 * media.fetch job to store, the others content.attachments (same shape);
 * the Body is then the caption.
 *
 * Outbound: POST {api}/2010-04-01/Accounts/{AccountSid}/Messages.json
 * (form: To, From or MessagingServiceSid, Body, MediaUrl, StatusCallback)
 * with HTTP Basic auth (the API key when there is one, else the account
 * SID and auth token), {api} being orbit_channel_api twilio or
 * https://api.twilio.com.  The StatusCallback (only with orbit_public_url)
 * is our webhook with ?messageId={our id}: Twilio signs the URL with it,
 * and a status that outruns the commit of its send still finds the
 * message.  Twilio has no idempotency key: a send retried after a lost
 * answer may go twice.  No read receipts.
 */

#include "ngx_http_orbit_module.h"
#include "channels/orbit_channel.h"
#include "core/orbit_form.h"


#define ORBIT_TW_API          "https://api.twilio.com"
#define ORBIT_TW_FIELDS       128           /* in a webhook */
#define ORBIT_TW_MEDIA_MAX    10            /* Twilio's own limit */
#define ORBIT_TW_BODY_MAX     1600          /* characters */
#define ORBIT_TW_ID_MAX       64
#define ORBIT_TW_PATH         "/api/v1/channels/twilio/"


/* a webhook's fields */
typedef struct {
    orbit_form_field_t          *f;
    size_t                       n;
} orbit_tw_form_t;


static ngx_int_t orbit_tw_verify(orbit_channel_in_t *in);
static ngx_int_t orbit_tw_check(orbit_channel_in_t *in, orbit_tw_form_t *form,
    const char *token, ngx_str_t *url, ngx_str_t *got);
static ngx_int_t orbit_tw_url(orbit_channel_in_t *in, ngx_str_t *url);
static ngx_int_t orbit_tw_parse(orbit_channel_in_t *in,
    orbit_tw_form_t *form);
static ngx_int_t orbit_tw_normalize(orbit_channel_in_t *in);
static ngx_int_t orbit_tw_message(orbit_channel_in_t *in,
    orbit_tw_form_t *form, const char *sid);
static json_t *orbit_tw_media(orbit_channel_in_t *in, orbit_tw_form_t *form,
    ngx_uint_t i);
static ngx_int_t orbit_tw_status(orbit_channel_in_t *in,
    orbit_tw_form_t *form, const char *sid, const char *status);
static const char *orbit_tw_value(orbit_tw_form_t *form, const char *name);
static ngx_int_t orbit_tw_id(const char *s, size_t max);
static ngx_int_t orbit_tw_send(orbit_channel_out_t *out);
static ngx_int_t orbit_tw_form(orbit_channel_out_t *out, const char **kv);
static ngx_int_t orbit_tw_auth(orbit_channel_out_t *out);
static const char *orbit_tw_callback(orbit_channel_out_t *out);
static orbit_send_rc_e orbit_tw_sent(orbit_channel_out_t *out);
static void orbit_tw_retry_after(orbit_channel_out_t *out);
static ngx_int_t orbit_tw_media_request(orbit_channel_out_t *out,
    json_t *media);


const orbit_channel_t  orbit_channel_twilio = {
    "twilio",
    "sms",
    NULL,
    orbit_tw_verify,
    orbit_tw_normalize,
    orbit_tw_send,
    orbit_tw_sent,
    NULL,
    NULL,
    NULL,
    orbit_tw_media_request,
    NULL,
    ORBIT_CHANNEL_KEYED,
    NULL,
};


static ngx_str_t  orbit_tw_twiml = ngx_string(
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>");
static ngx_str_t  orbit_tw_xml = ngx_string("text/xml");


/*
 * X-Twilio-Signature under the connection's auth token, over the URL
 * Twilio requested and the form's fields.  A URL with a port is also
 * tried without it: Twilio leaves the port out of what it signs in some
 * set-ups, and its own libraries check both.
 */

static ngx_int_t
orbit_tw_verify(orbit_channel_in_t *in)
{
    u_char           *p, *host, *end;
    ngx_int_t         rc;
    ngx_str_t         url, got, bare;
    const char       *token;
    orbit_tw_form_t   form;
    ngx_table_elt_t  *h;

    token = json_string_value(json_object_get(in->credentials, "authToken"));

    if (token == NULL || token[0] == '\0') {
        in->error = "this connection has no authToken to verify with";
        return NGX_HTTP_FORBIDDEN;
    }

    h = orbit_header_in(in->ar->r, "X-Twilio-Signature");

    if (h == NULL || h->value.len == 0) {
        in->error = "X-Twilio-Signature is missing";
        return NGX_HTTP_FORBIDDEN;
    }

    got = h->value;

    rc = orbit_tw_parse(in, &form);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = orbit_tw_url(in, &url);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = orbit_tw_check(in, &form, token, &url, &got);
    if (rc != NGX_HTTP_FORBIDDEN) {
        return rc;
    }

    /* scheme://host:port/... -> scheme://host/... */

    host = ngx_strlchr(url.data, url.data + url.len, ':') + 3;
    end = ngx_strlchr(host, url.data + url.len, '/');
    end = end ? end : url.data + url.len;
    p = ngx_strlchr(host, end, ':');

    if (p == NULL) {
        return rc;
    }

    bare.data = ngx_pnalloc(in->ar->r->pool, url.len);
    if (bare.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bare.len = ngx_cpymem(ngx_cpymem(bare.data, url.data, p - url.data),
                          end, url.data + url.len - end)
               - bare.data;

    return orbit_tw_check(in, &form, token, &bare, &got);
}


static ngx_int_t
orbit_tw_check(orbit_channel_in_t *in, orbit_tw_form_t *form,
    const char *token, ngx_str_t *url, ngx_str_t *got)
{
    char  sig[ORBIT_TWILIO_SIG_LEN + 1];

    if (orbit_twilio_signature(sig, token, ngx_strlen(token),
                               (char *) url->data, url->len, form->f,
                               form->n)
        != 0)
    {
        in->error = "the signature could not be computed";
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (!orbit_equal(sig, ORBIT_TWILIO_SIG_LEN, got->data, got->len)) {
        in->error = "X-Twilio-Signature does not match the request";
        return NGX_HTTP_FORBIDDEN;
    }

    return NGX_OK;
}


/* the URL Twilio requested, as it signed it */

static ngx_int_t
orbit_tw_url(orbit_channel_in_t *in, ngx_str_t *url)
{
    u_char              *p;
    ngx_str_t           *pub, scheme;
    ngx_table_elt_t     *host;
    ngx_http_request_t  *r;

    r = in->ar->r;
    pub = ngx_http_orbit_public_url();

    if (pub) {
        url->data = ngx_pnalloc(r->pool, pub->len + r->unparsed_uri.len);
        if (url->data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = ngx_cpymem(url->data, pub->data, pub->len);
        p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);
        url->len = p - url->data;

        return NGX_OK;
    }

    host = r->headers_in.host;

    if (host == NULL || host->value.len == 0) {
        in->error = "the request has no Host to rebuild the signed URL "
                    "with";
        return NGX_HTTP_FORBIDDEN;
    }

    ngx_str_set(&scheme, "http://");

#if (NGX_HTTP_SSL)
    if (r->connection->ssl) {
        ngx_str_set(&scheme, "https://");
    }
#endif

    url->data = ngx_pnalloc(r->pool, scheme.len + host->value.len
                                     + r->unparsed_uri.len);
    if (url->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(url->data, scheme.data, scheme.len);
    p = ngx_cpymem(p, host->value.data, host->value.len);
    p = ngx_cpymem(p, r->unparsed_uri.data, r->unparsed_uri.len);
    url->len = p - url->data;

    return NGX_OK;
}


static ngx_int_t
orbit_tw_parse(orbit_channel_in_t *in, orbit_tw_form_t *form)
{
    char        *buf;
    ngx_pool_t  *pool;

    pool = in->ar->r->pool;

    form->f = ngx_palloc(pool, ORBIT_TW_FIELDS * sizeof(orbit_form_field_t));
    buf = ngx_pnalloc(pool, ORBIT_FORM_BUF_SIZE(in->body.len));

    if (form->f == NULL || buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_form_parse((char *) in->body.data, in->body.len, buf, form->f,
                         ORBIT_TW_FIELDS, &form->n)
        != 0)
    {
        in->error = "the body must be application/x-www-form-urlencoded";
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


/* a message, or the status of one of ours */

static ngx_int_t
orbit_tw_normalize(orbit_channel_in_t *in)
{
    ngx_int_t         rc;
    const char       *sid, *status;
    orbit_tw_form_t   form;

    rc = orbit_tw_parse(in, &form);
    if (rc != NGX_OK) {
        return rc;
    }

    sid = orbit_tw_value(&form, "MessageSid");
    if (sid == NULL) {
        sid = orbit_tw_value(&form, "SmsSid");
    }

    if (sid == NULL || orbit_tw_id(sid, ORBIT_TW_ID_MAX) != NGX_OK) {
        in->error = "MessageSid must be a message SID";
        return NGX_HTTP_BAD_REQUEST;
    }

    status = orbit_tw_value(&form, "MessageStatus");
    if (status == NULL) {
        status = orbit_tw_value(&form, "SmsStatus");
    }

    if (status == NULL || ngx_strcmp(status, "received") == 0
        || ngx_strcmp(status, "receiving") == 0)
    {
        rc = orbit_tw_message(in, &form, sid);

    } else {
        rc = orbit_tw_status(in, &form, sid, status);
    }

    if (rc == NGX_OK) {
        in->reply = orbit_tw_twiml;
        in->reply_type = orbit_tw_xml;
    }

    return rc;
}


static ngx_int_t
orbit_tw_message(orbit_channel_in_t *in, orbit_tw_form_t *form,
    const char *sid)
{
    json_t      *item, *content, *media, *list, *contact;
    ngx_int_t    n;
    ngx_uint_t   i;
    const char  *from, *body, *num, *type, *mime;

    from = orbit_tw_value(form, "From");
    body = orbit_tw_value(form, "Body");
    num = orbit_tw_value(form, "NumMedia");

    if (from == NULL || from[0] == '\0' || ngx_strlen(from) > 64) {
        in->error = "From must be the sender's number";
        return NGX_HTTP_BAD_REQUEST;
    }

    n = 0;

    if (num && num[0] != '\0') {
        n = ngx_atoi((u_char *) num, ngx_strlen(num));

        if (n == NGX_ERROR || n > ORBIT_TW_MEDIA_MAX) {
            in->error = "NumMedia must be a number from 0 to 10";
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    content = json_object();
    if (content == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    type = "text";

    if (n == 0) {
        json_object_set_new(content, "text", json_string(body ? body : ""));

    } else {
        list = NULL;

        for (i = 0; i < (ngx_uint_t) n; i++) {
            media = orbit_tw_media(in, form, i);
            if (media == NULL) {
                json_decref(list);
                json_decref(content);
                return in->error ? NGX_HTTP_BAD_REQUEST
                                 : NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            if (i == 0) {
                mime = json_string_value(json_object_get(media, "mimeType"));
                type = mime == NULL ? "document"
                       : ngx_strncmp(mime, "image/", 6) == 0 ? "image"
                       : ngx_strncmp(mime, "video/", 6) == 0 ? "video"
                       : ngx_strncmp(mime, "audio/", 6) == 0 ? "audio"
                       : "document";

                json_object_set_new(content, "media", media);
                continue;
            }

            if (list == NULL) {
                list = json_array();
            }

            if (list == NULL || json_array_append_new(list, media) != 0) {
                json_decref(media);
                json_decref(list);
                json_decref(content);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        if (list) {
            json_object_set_new(content, "attachments", list);
        }

        if (body && body[0] != '\0') {
            json_object_set_new(content, "caption", json_string(body));
        }
    }

    /* a text that is not UTF-8: jansson made no string of it */

    if ((n == 0 && json_object_get(content, "text") == NULL)
        || (body && body[0] && n && json_object_get(content, "caption")
            == NULL))
    {
        json_decref(content);
        in->error = "Body must be UTF-8";
        return NGX_HTTP_BAD_REQUEST;
    }

    contact = json_pack("{s:s}", "externalId", from);
    if (contact == NULL) {
        json_decref(content);
        in->error = "From must be the sender's number";
        return NGX_HTTP_BAD_REQUEST;
    }

    if (orbit_valid_e164(from, ngx_strlen(from))) {
        json_object_set_new(contact, "phone", json_string(from));
    }

    item = orbit_channel_item(in, "message", "sms", in->account);
    if (item == NULL) {
        json_decref(contact);
        json_decref(content);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "contact", contact);
    json_object_set_new(item, "providerMessageId", json_string(sid));
    json_object_set_new(item, "type", json_string(type));
    json_object_set_new(item, "content", content);

    return NGX_OK;
}


/* MediaUrl{i} and MediaContentType{i}; NULL (in->error when malformed) */

static json_t *
orbit_tw_media(orbit_channel_in_t *in, orbit_tw_form_t *form, ngx_uint_t i)
{
    u_char      *msg;
    json_t      *media;
    const char  *url, *mime;
    u_char       name[sizeof("MediaContentType") + NGX_INT_T_LEN];

    ngx_sprintf(name, "MediaUrl%ui%Z", i);
    url = orbit_tw_value(form, (char *) name);

    ngx_sprintf(name, "MediaContentType%ui%Z", i);
    mime = orbit_tw_value(form, (char *) name);

    if (url == NULL || ngx_strlen(url) > 2048
        || (ngx_strncmp(url, "https://", 8) != 0
            && ngx_strncmp(url, "http://", 7) != 0))
    {
        msg = ngx_pnalloc(in->ar->r->pool, 64);
        if (msg == NULL) {
            in->error = "a MediaUrl must be an http(s) URL";
            return NULL;
        }

        ngx_sprintf(msg, "MediaUrl%ui must be an http(s) URL%Z", i);
        in->error = (char *) msg;
        return NULL;
    }

    media = json_pack("{s:s, s:s}", "provider", "twilio", "url", url);

    if (media && mime && mime[0] != '\0' && ngx_strlen(mime) <= 255) {
        json_object_set_new(media, "mimeType", json_string(mime));
    }

    return media;
}


/*
 * MessageStatus: sent, delivered, read as they are; undelivered, failed
 * (and canceled) as failed with the ErrorCode.  queued, sending,
 * accepted, scheduled and statuses we do not know: nothing.
 */

static ngx_int_t
orbit_tw_status(orbit_channel_in_t *in, orbit_tw_form_t *form,
    const char *sid, const char *status)
{
    json_t      *item, *error;
    ngx_int_t    code;
    ngx_uint_t   i;
    const char  *ours, *ecode, *emsg, *id, *title;

    static const struct {
        ngx_int_t     code;
        const char   *title;
    }  titles[] = {
        { 21610, "The recipient replied STOP: unsubscribed" },
        { 30003, "Unreachable destination handset" },
        { 30004, "Message blocked" },
        { 30005, "Unknown destination handset" },
        { 30006, "Landline or unreachable carrier" },
        { 30007, "Message filtered by the carrier" },
        { 30008, "Unknown error" },
        { 0, NULL }
    };

    if (ngx_strcmp(status, "sent") == 0
        || ngx_strcmp(status, "delivered") == 0
        || ngx_strcmp(status, "read") == 0)
    {
        ours = status;

    } else if (ngx_strcmp(status, "undelivered") == 0
               || ngx_strcmp(status, "failed") == 0
               || ngx_strcmp(status, "canceled") == 0)
    {
        ours = "failed";

    } else {
        return NGX_OK;
    }

    item = orbit_channel_item(in, "status", "sms", in->account);
    if (item == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(item, "providerMessageId", json_string(sid));
    json_object_set_new(item, "status", json_string(ours));

    /* our id, in the StatusCallback we gave */
    id = orbit_api_arg(in->ar, "messageId");
    if (id && orbit_valid_uuid(id, ngx_strlen(id))) {
        json_object_set_new(item, "messageId", json_string(id));
    }

    if (ours[0] != 'f') {
        return NGX_OK;
    }

    ecode = orbit_tw_value(form, "ErrorCode");
    emsg = orbit_tw_value(form, "ErrorMessage");
    code = (ecode && ecode[0]) ? ngx_atoi((u_char *) ecode,
                                          ngx_strlen(ecode))
                               : NGX_ERROR;

    title = (emsg && emsg[0]) ? emsg : NULL;

    for (i = 0; title == NULL && titles[i].title; i++) {
        if (titles[i].code == code) {
            title = titles[i].title;
        }
    }

    if (title == NULL) {
        title = ngx_strcmp(status, "canceled") == 0
                ? "The message was canceled"
                : ngx_strcmp(status, "undelivered") == 0
                ? "Twilio could not deliver the message"
                : "Twilio could not send the message";
    }

    error = json_pack("{s:s, s:s}", "title", title, "status", status);
    if (error == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (code != NGX_ERROR) {
        json_object_set_new(error, "code", json_integer(code));
    }

    json_object_set_new(item, "error", error);

    return NGX_OK;
}


static const char *
orbit_tw_value(orbit_tw_form_t *form, const char *name)
{
    const orbit_form_field_t  *f;

    f = orbit_form_get(form->f, form->n, name);

    return f ? f->value : NULL;
}


/* a SID: letters and digits only (it goes into paths) */

static ngx_int_t
orbit_tw_id(const char *s, size_t max)
{
    size_t  i;

    for (i = 0; s[i]; i++) {
        if (i == max
            || !((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z')
                 || (s[i] >= '0' && s[i] <= '9')))
        {
            return NGX_ERROR;
        }
    }

    return i ? NGX_OK : NGX_ERROR;
}


/* outbound ------------------------------------------------------------ */


static ngx_int_t
orbit_tw_send(orbit_channel_out_t *out)
{
    u_char      *p;
    size_t       chars;
    json_t      *m, *c;
    ngx_str_t   *api;
    ngx_uint_t   n;
    const char  *sid, *type, *to, *body, *media, *kv[12];

    static ngx_str_t  twilio = ngx_string(ORBIT_TW_API);

    m = out->message;
    c = json_object_get(m, "content");
    type = json_string_value(json_object_get(m, "type"));
    sid = json_string_value(json_object_get(out->credentials, "accountSid"));

    if (sid == NULL || orbit_tw_id(sid, ORBIT_TW_ID_MAX) != NGX_OK) {
        orbit_channel_error(out, 401, "The SMS connection has no "
                                      "credentials.accountSid");
        return NGX_DECLINED;
    }

    to = out->to_phone;

    if (to == NULL && out->to && orbit_valid_e164(out->to,
                                                  ngx_strlen(out->to)))
    {
        to = out->to;
    }

    if (to == NULL || !orbit_valid_e164(to, ngx_strlen(to))) {
        orbit_channel_error(out, 400, "The contact has no E.164 phone "
                                      "number to text");
        return NGX_DECLINED;
    }

    media = NULL;

    if (type && ngx_strcmp(type, "text") == 0) {
        body = json_string_value(json_object_get(c, "text"));

    } else if (type && (ngx_strcmp(type, "image") == 0
                        || ngx_strcmp(type, "video") == 0
                        || ngx_strcmp(type, "audio") == 0
                        || ngx_strcmp(type, "document") == 0))
    {
        body = json_string_value(json_object_get(c, "caption"));
        media = json_string_value(json_object_get(
                    json_object_get(c, "media"), "url"));

    } else {
        orbit_channel_error(out, 400, "SMS sends text and media only");
        return NGX_DECLINED;
    }

    if ((body == NULL || body[0] == '\0') && media == NULL) {
        orbit_channel_error(out, 400, "The message has no text to send");
        return NGX_DECLINED;
    }

    /* characters, not bytes: UTF-8 lead bytes */

    chars = 0;

    for (p = (u_char *) body; p && *p; p++) {
        chars += (*p & 0xc0) != 0x80;
    }

    if (chars > ORBIT_TW_BODY_MAX) {
        orbit_channel_error(out, 400, "The text is longer than the 1600 "
                                      "characters an SMS can carry");
        return NGX_DECLINED;
    }

    n = 0;
    kv[n++] = "To";
    kv[n++] = to;
    kv[n++] = (out->account[0] == 'M' && out->account[1] == 'G')
              ? "MessagingServiceSid" : "From";
    kv[n++] = out->account;

    if (body && body[0] != '\0') {
        kv[n++] = "Body";
        kv[n++] = body;
    }

    if (media) {
        kv[n++] = "MediaUrl";
        kv[n++] = media;
    }

    if (ngx_http_orbit_public_url()) {
        kv[n++] = "StatusCallback";
        kv[n++] = orbit_tw_callback(out);

        if (kv[n - 1] == NULL) {
            return NGX_ERROR;
        }
    }

    kv[n] = NULL;

    if (orbit_tw_form(out, kv) != NGX_OK) {
        return NGX_ERROR;
    }

    api = ngx_http_orbit_channel_api_url("twilio", &twilio);

    out->req->url.data = ngx_pnalloc(out->pool, api->len + ngx_strlen(sid)
                             + sizeof("/2010-04-01/Accounts//Messages.json"));
    if (out->req->url.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(out->req->url.data, "%V/2010-04-01/Accounts/%s"
                    "/Messages.json", api, sid);
    out->req->url.len = p - out->req->url.data;

    ngx_str_set(&out->req->method, "POST");

    if (orbit_tw_auth(out) != NGX_OK
        || orbit_channel_header(out, "Content-Type",
                                "application/x-www-form-urlencoded")
           != NGX_OK)
    {
        return out->error.len ? NGX_DECLINED : NGX_ERROR;
    }

    return NGX_OK;
}


/* kv: name, value, ..., NULL as out->req's form body */

static ngx_int_t
orbit_tw_form(orbit_channel_out_t *out, const char **kv)
{
    char        *p;
    size_t       len;
    ngx_uint_t   i;

    len = 0;

    for (i = 0; kv[i]; i++) {
        len += orbit_form_escape_len(kv[i], ngx_strlen(kv[i])) + 1;
    }

    p = ngx_pnalloc(out->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->req->body.data = (u_char *) p;

    for (i = 0; kv[i]; i++) {
        if (i) {
            *p++ = (i % 2) ? '=' : '&';
        }

        p = orbit_form_escape(p, kv[i], ngx_strlen(kv[i]));
    }

    out->req->body.len = (u_char *) p - out->req->body.data;

    return NGX_OK;
}


/* Basic: the API key's SID and secret, else the account SID and token */

static ngx_int_t
orbit_tw_auth(orbit_channel_out_t *out)
{
    u_char      *p;
    ngx_str_t    plain, enc;
    const char  *user, *pass;

    user = json_string_value(json_object_get(out->credentials, "apiKeySid"));
    pass = json_string_value(json_object_get(out->credentials,
                                             "apiKeySecret"));

    if (user == NULL || user[0] == '\0' || pass == NULL || pass[0] == '\0') {
        user = json_string_value(json_object_get(out->credentials,
                                                 "accountSid"));
        pass = json_string_value(json_object_get(out->credentials,
                                                 "authToken"));
    }

    if (user == NULL || pass == NULL || pass[0] == '\0') {
        orbit_channel_error(out, 401, "The SMS connection has no "
                                      "credentials.authToken (or API key)");
        return NGX_DECLINED;
    }

    plain.len = ngx_strlen(user) + 1 + ngx_strlen(pass);
    plain.data = ngx_pnalloc(out->pool, plain.len);
    enc.data = ngx_pnalloc(out->pool, ngx_base64_encoded_length(plain.len));
    p = ngx_pnalloc(out->pool, sizeof("Basic ")
                               + ngx_base64_encoded_length(plain.len));

    if (plain.data == NULL || enc.data == NULL || p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(plain.data, "%s:%s", user, pass);
    ngx_encode_base64(&enc, &plain);
    ngx_sprintf(p, "Basic %V%Z", &enc);

    return orbit_channel_header(out, "Authorization", (char *) p);
}


/* {public}/api/v1/channels/twilio/{account}/webhook?messageId={id} */

static const char *
orbit_tw_callback(orbit_channel_out_t *out)
{
    u_char      *url, *p;
    ngx_str_t   *pub;
    const char  *id;

    pub = ngx_http_orbit_public_url();
    id = json_string_value(json_object_get(out->message, "id"));

    url = ngx_pnalloc(out->pool, pub->len + sizeof(ORBIT_TW_PATH)
                                 + 3 * ngx_strlen(out->account)
                                 + sizeof("/webhook?messageId=")
                                 + (id ? ngx_strlen(id) : 0));
    if (url == NULL) {
        return NULL;
    }

    p = ngx_sprintf(url, "%V" ORBIT_TW_PATH, pub);
    p = (u_char *) orbit_form_escape((char *) p, out->account,
                                     ngx_strlen(out->account));
    p = ngx_cpymem(p, "/webhook", sizeof("/webhook") - 1);

    if (id && orbit_valid_uuid(id, ngx_strlen(id))) {
        p = ngx_sprintf(p, "?messageId=%s", id);
    }

    *p = '\0';

    return (char *) url;
}


/*
 * 201 {"sid":"SM...","status":"queued"}: sent.  No answer, 429 and 5xx:
 * later (Retry-After honoured).  Another error: never, with Twilio's
 * {"code","message","more_info","status"} as the reason.
 */

static orbit_send_rc_e
orbit_tw_sent(orbit_channel_out_t *out)
{
    json_t      *res;
    ngx_int_t    code;
    ngx_uint_t   status;
    const char  *sid, *msg;

    status = out->req->status;
    res = json_loadb((char *) out->req->response.data,
                     out->req->response.len, 0, NULL);

    if (status >= 200 && status < 300) {
        sid = json_string_value(json_object_get(res, "sid"));

        if (sid == NULL || orbit_channel_provider_id(out, sid) != NGX_OK) {
            json_decref(res);
            orbit_channel_error(out, (ngx_int_t) status,
                                "Twilio answered without a message SID");
            return ORBIT_SEND_RETRY;
        }

        json_decref(res);
        return ORBIT_SEND_DONE;
    }

    code = json_is_integer(json_object_get(res, "code"))
           ? (ngx_int_t) json_integer_value(json_object_get(res, "code"))
           : (ngx_int_t) status;
    msg = json_string_value(json_object_get(res, "message"));

    orbit_channel_error(out, code, msg ? msg
                                       : status ? "Twilio refused it"
                                                : "Twilio did not answer");
    json_decref(res);

    if (status == 0 || status == 429 || status >= 500) {
        orbit_tw_retry_after(out);
        return ORBIT_SEND_RETRY;
    }

    return ORBIT_SEND_FAIL;
}


static void
orbit_tw_retry_after(orbit_channel_out_t *out)
{
    ngx_int_t         n;
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    if (out->req->response_headers == NULL) {
        return;
    }

    h = out->req->response_headers->elts;

    for (i = 0; i < out->req->response_headers->nelts; i++) {
        if (h[i].key.len == sizeof("Retry-After") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Retry-After",
                               h[i].key.len) == 0)
        {
            n = ngx_atoi(h[i].value.data, h[i].value.len);
            if (n > 0 && n < 3600) {
                out->retry_after = (ngx_msec_t) n * 1000;
            }

            return;
        }
    }
}


/*
 * The download of an inbound message's media: its MediaUrl, with the
 * account's Basic auth when the URL is the account's on Twilio's API
 * (never to another host).
 */

static ngx_int_t
orbit_tw_media_request(orbit_channel_out_t *out, json_t *media)
{
    u_char      *p;
    size_t       len;
    ngx_str_t   *api;
    const char  *url, *sid;

    static ngx_str_t  twilio = ngx_string(ORBIT_TW_API);

    url = json_string_value(json_object_get(media, "url"));

    if (out->req == NULL) {
        out->req = orbit_http_req_create(out->pool);
        if (out->req == NULL) {
            return NGX_ERROR;
        }
    }

    if (url == NULL
        || (ngx_strncmp(url, "https://", 8) != 0
            && ngx_strncmp(url, "http://", 7) != 0))
    {
        orbit_channel_error(out, 400, "The media has no http(s) URL");
        return NGX_DECLINED;
    }

    out->req->url.len = ngx_strlen(url);
    out->req->url.data = ngx_pnalloc(out->pool, out->req->url.len);
    if (out->req->url.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(out->req->url.data, url, out->req->url.len);
    ngx_str_set(&out->req->method, "GET");

    api = ngx_http_orbit_channel_api_url("twilio", &twilio);
    sid = json_string_value(json_object_get(out->credentials, "accountSid"));

    if (sid == NULL || orbit_tw_id(sid, ORBIT_TW_ID_MAX) != NGX_OK) {
        return NGX_DONE;
    }

    len = api->len + sizeof("/2010-04-01/Accounts//") + ngx_strlen(sid);
    p = ngx_pnalloc(out->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    len = ngx_sprintf(p, "%V/2010-04-01/Accounts/%s/", api, sid) - p;

    if (out->req->url.len > len
        && ngx_strncmp(out->req->url.data, p, len) == 0)
    {
        if (orbit_tw_auth(out) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return NGX_DONE;
}
