/*
 * OrbitDesk REST: media files (009_media.sql), in the storage named by
 * orbit_media (src/io/orbit_storage.c).
 *
 *   POST /api/v1/media?filename=a.pdf   the file's bytes as the body, with
 *                                       their Content-Type -> 201 {id, url,
 *                                       mimeType, size, sha256, ...}
 *   GET  /api/v1/media/{id}             the bytes (an S3 object: 302 to a
 *                                       presigned URL), for the tenant's
 *                                       users and keys
 *   GET  /api/v1/media/{id}/content?expires=E&sig=S
 *                                       the same for whoever holds the
 *                                       signed link: how providers
 *                                       (WhatsApp "link", Twilio MediaUrl)
 *                                       fetch what an agent sends
 *
 * A message names an upload with content.media.mediaId; its delivery job
 * gives the provider a link that expires (orbit_media_link).
 */

#include "ngx_http_orbit_module.h"
#include "api/orbit_api.h"
#include "channels/orbit_channel.h"


#define ORBIT_MEDIA_S3_TTL       300         /* a presigned GET, seconds */
#define ORBIT_MEDIA_SIG_LEN      32          /* hex digits of the link's */
#define ORBIT_MEDIA_MAX_NAME     255


typedef struct {
    orbit_api_req_t             *ar;
    orbit_storage_op_t          *op;
    char                         id[ORBIT_UUID_LEN + 1];
    const char                  *filename;
    const char                  *mime;
} orbit_media_upload_t;


static void orbit_media_stored(orbit_storage_op_t *op);
static void orbit_media_found(orbit_api_req_t *ar, PGresult *res);
static ngx_int_t orbit_media_send_file(orbit_api_req_t *ar, u_char *path,
    const char *mime, const char *filename);
static ngx_int_t orbit_media_sign(const char *id, time_t expires,
    char sig[ORBIT_MEDIA_SIG_LEN + 1]);
static ngx_int_t orbit_media_mime_ok(ngx_str_t *mime);
static ngx_uint_t orbit_media_inline(const char *mime);


static const char  orbit_media_find_sql[] =
    "SELECT storage, key, mime_type, filename FROM media"
    " WHERE id = $1::uuid AND tenant_id = $2::uuid";


ngx_int_t
orbit_api_media_upload(orbit_api_req_t *ar)
{
    ngx_str_t              body, mime;
    orbit_storage_t       *st;
    ngx_table_elt_t       *ct;
    orbit_media_upload_t  *up;

    st = ngx_http_orbit_storage();

    if (st == NULL) {
        return orbit_api_send_error(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "Media storage is not configured "
                                    "(orbit_media)");
    }

    ct = ar->r->headers_in.content_type;

    if (ct == NULL || ct->value.len == 0) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "Content-Type must name the file's "
                                    "type");
    }

    mime = ct->value;

    if (ar->r->headers_in.content_length_n > (off_t) st->max_size) {
        return orbit_api_send_error(ar, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "The file is larger than "
                                    "orbit_media_max_size");
    }

    if (ngx_strlcasestrn(mime.data, mime.data + mime.len,
                         (u_char *) "multipart/", 10 - 1)
        == mime.data)
    {
        return orbit_api_send_error(ar, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                    "Send the file's bytes as the body, "
                                    "with their Content-Type (not a form)");
    }

    if (orbit_media_mime_ok(&mime) != NGX_OK) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "Content-Type is not a media type");
    }

    if (orbit_api_raw_body(ar, &body) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (body.len == 0) {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "The body is empty: it must be the "
                                    "file");
    }

    if (body.len > st->max_size) {
        return orbit_api_send_error(ar, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                    "The file is larger than "
                                    "orbit_media_max_size");
    }

    up = ngx_pcalloc(ar->r->pool, sizeof(orbit_media_upload_t));
    if (up == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up->ar = ar;
    up->filename = orbit_api_arg(ar, "filename");
    up->mime = orbit_media_type(ar->r->pool, mime.data, mime.len);

    if (up->filename
        && (up->filename[0] == '\0'
            || ngx_strlen(up->filename) > ORBIT_MEDIA_MAX_NAME
            || strpbrk(up->filename, "/\\\"\r\n") != NULL))
    {
        return orbit_api_send_error(ar, NGX_HTTP_BAD_REQUEST,
                                    "filename must have 1 to 255 characters,"
                                    " without / \\ \" or line breaks");
    }

    if (up->mime == NULL || orbit_random_uuid(up->id) != 0) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up->op = orbit_storage_op_create(ar->r->pool);
    if (up->op == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    up->op->storage = st;
    up->op->http = ngx_http_orbit_http_client();
    up->op->key.len = ar->who.tenant_id.len + 1 + ORBIT_UUID_LEN;
    up->op->key.data = ngx_pnalloc(ar->r->pool, up->op->key.len);
    up->op->mime.data = (u_char *) up->mime;
    up->op->mime.len = up->mime ? ngx_strlen(up->mime) : 0;
    up->op->data = body;
    up->op->handler = orbit_media_stored;
    up->op->ctx = up;
    up->op->log = ar->r->connection->log;

    if (up->op->key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_sprintf(up->op->key.data, "%V/%s", &ar->who.tenant_id, up->id);

    if (orbit_storage_put(up->op) != NGX_OK) {
        return orbit_api_send_error(ar, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "The file could not be stored");
    }

    orbit_api_hold(ar);

    return NGX_DONE;
}


/* the bytes are stored: the row, then 201 */

static void
orbit_media_stored(orbit_storage_op_t *op)
{
    orbit_media_upload_t  *up = op->ctx;

    u_char           *size;
    const char      **v;
    orbit_api_req_t  *ar;

    static const char  sql[] =
        "INSERT INTO media (id, tenant_id, storage, key, mime_type, size,"
        "  sha256, filename, source, created_by)"
        " VALUES ($1::uuid, $2::uuid, $3, $4, $5, $6::bigint, $7, $8,"
        "  'upload', $9::uuid)"
        " RETURNING 201, orbit_media_json(media)";

    ar = up->ar;

    if (op->rc != NGX_OK) {
        orbit_api_finish(ar, orbit_api_send_error(ar,
                                 NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "The file could not be stored"));
        return;
    }

    v = ngx_pcalloc(ar->r->pool, 9 * sizeof(char *));
    size = ngx_pnalloc(ar->r->pool, NGX_SIZE_T_LEN + 1);

    if (v == NULL || size == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_sprintf(size, "%uz%Z", op->data.len);

    v[0] = up->id;
    v[1] = (char *) ar->who.tenant_id.data;
    v[2] = orbit_storage_name(op->storage);
    v[3] = orbit_api_strdup_n(ar->r->pool, op->key.data, op->key.len);
    v[4] = up->mime;
    v[5] = (char *) size;
    v[6] = op->sha256;
    v[7] = up->filename;
    v[8] = ar->who.user_id.len ? (char *) ar->who.user_id.data : NULL;

    orbit_api_finish(ar, orbit_api_query(ar, sql, 9, v,
                                         orbit_api_respond_row));
}


ngx_int_t
orbit_api_media_get(orbit_api_req_t *ar)
{
    return orbit_api_query_id(ar, orbit_media_find_sql, 2, orbit_media_found);
}


/* the signed link: no principal, the signature and the expiry say who */

ngx_int_t
orbit_api_media_content(orbit_api_req_t *ar)
{
    char         *expires, *sig, want[ORBIT_MEDIA_SIG_LEN + 1];
    time_t        until;
    const char  **v;

    static const char  sql[] =
        "SELECT storage, key, mime_type, filename FROM media"
        " WHERE id = $1::uuid";

    v = ngx_pcalloc(ar->r->pool, sizeof(char *));
    if (v == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (orbit_api_uuid_param(ar, 0, &v[0]) != NGX_OK) {
        return ar->rc;
    }

    expires = orbit_api_arg(ar, "expires");
    sig = orbit_api_arg(ar, "sig");

    until = expires ? ngx_atotm((u_char *) expires, ngx_strlen(expires))
                    : NGX_ERROR;

    if (until == NGX_ERROR || sig == NULL
        || orbit_media_sign(v[0], until, want) != NGX_OK
        || !orbit_equal(sig, ngx_strlen(sig), want, ORBIT_MEDIA_SIG_LEN))
    {
        return orbit_api_send_error(ar, NGX_HTTP_FORBIDDEN,
                                    "The link's signature does not match");
    }

    if (until < ngx_time()) {
        return orbit_api_send_error(ar, 410,
                                    "The link has expired");
    }

    return orbit_api_query(ar, sql, 1, v, orbit_media_found);
}


static void
orbit_media_found(orbit_api_req_t *ar, PGresult *res)
{
    u_char           *path;
    ngx_str_t         key, url;
    ngx_table_elt_t  *h;
    orbit_storage_t  *st;

    if (PQntuples(res) != 1) {
        orbit_api_finish(ar, orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                                  "Not Found"));
        return;
    }

    st = ngx_http_orbit_storage();

    if (st == NULL
        || ngx_strcmp(PQgetvalue(res, 0, 0), orbit_storage_name(st)) != 0)
    {
        orbit_api_finish(ar, orbit_api_send_error(ar,
                                 NGX_HTTP_SERVICE_UNAVAILABLE,
                                 "The file is in a storage not configured "
                                 "here (orbit_media)"));
        return;
    }

    key.data = (u_char *) orbit_api_strdup(ar->r->pool, PQgetvalue(res, 0, 1));
    key.len = PQgetlength(res, 0, 1);

    if (key.data == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (st->type == ORBIT_STORAGE_S3) {
        if (orbit_storage_s3_url(st, ar->r->pool, &key, ORBIT_MEDIA_S3_TTL,
                                 &url) != NGX_OK)
        {
            orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        h = ngx_list_push(&ar->r->headers_out.headers);
        if (h == NULL) {
            orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Location");
        h->value = url;
        ar->r->headers_out.location = h;

        orbit_api_finish(ar, NGX_HTTP_MOVED_TEMPORARILY);
        return;
    }

    path = orbit_storage_path(st, ar->r->pool, &key);
    if (path == NULL) {
        orbit_api_finish(ar, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    orbit_api_finish(ar, orbit_media_send_file(ar, path,
                             orbit_api_strdup(ar->r->pool,
                                              PQgetvalue(res, 0, 2)),
                             PQgetisnull(res, 0, 3)
                             ? NULL
                             : orbit_api_strdup(ar->r->pool,
                                                PQgetvalue(res, 0, 3))));
}


/* the file itself, by sendfile where nginx may */

static ngx_int_t
orbit_media_send_file(orbit_api_req_t *ar, u_char *path, const char *mime,
    const char *filename)
{
    char                 *how;
    ngx_fd_t              fd;
    ngx_int_t             rc;
    ngx_buf_t            *b;
    ngx_chain_t           out;
    ngx_file_info_t       fi;
    ngx_table_elt_t      *h;
    ngx_pool_cleanup_t   *cln;
    ngx_http_request_t   *r;
    ngx_pool_cleanup_file_t  *clnf;

    r = ar->r;

    if (mime == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_pool_cleanup_file_t));
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fd = ngx_open_file(path, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);

    if (fd == NGX_INVALID_FILE) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, ngx_errno,
                      ngx_open_file_n " \"%s\" failed", path);
        return orbit_api_send_error(ar, NGX_HTTP_NOT_FOUND,
                                    "The file is missing from the storage");
    }

    cln->handler = ngx_pool_cleanup_file;
    clnf = cln->data;
    clnf->fd = fd;
    clnf->name = path;
    clnf->log = r->pool->log;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ar->json_sent = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = ngx_file_size(&fi);
    r->headers_out.last_modified_time = ngx_file_mtime(&fi);
    r->allow_ranges = 1;

    if (ngx_http_set_etag(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->headers_out.content_type.data = (u_char *) mime;
    r->headers_out.content_type.len = ngx_strlen(mime);
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Content-Disposition");

    /* shown in the browser only what cannot run script there */

    how = orbit_media_inline(mime) ? "inline" : "attachment";
    filename = orbit_media_filename(r->pool, filename);

    h->value.data = ngx_pnalloc(r->pool, sizeof("attachment; filename=\"\"")
                                         + (filename ? ngx_strlen(filename)
                                                     : 0));
    if (h->value.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->value.len = (filename
                    ? ngx_sprintf(h->value.data, "%s; filename=\"%s\"", how,
                                  filename)
                    : ngx_sprintf(h->value.data, "%s", how))
                   - h->value.data;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Content-Security-Policy");
    ngx_str_set(&h->value, "sandbox; default-src 'none'");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "X-Content-Type-Options");
    ngx_str_set(&h->value, "nosniff");

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file_pos = 0;
    b->file_last = ngx_file_size(&fi);
    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    b->file->fd = fd;
    b->file->name.data = path;
    b->file->name.len = ngx_strlen(path);
    b->file->log = r->connection->log;
    b->file->directio = 0;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * A URL the provider can fetch a tenant's media by, for ttl seconds:
 * S3's presigned URL, or our signed link on orbit_public_url.
 * NGX_DECLINED when there is none (no storage, no public URL).
 */

ngx_int_t
orbit_media_link(ngx_pool_t *pool, ngx_str_t *tenant, const char *id,
    time_t ttl, ngx_str_t *url)
{
    time_t            until;
    ngx_str_t         key, *base;
    orbit_storage_t  *st;
    char              sig[ORBIT_MEDIA_SIG_LEN + 1];

    st = ngx_http_orbit_storage();

    if (st == NULL || ngx_strlen(id) != ORBIT_UUID_LEN) {
        return NGX_DECLINED;
    }

    if (st->type == ORBIT_STORAGE_S3) {
        key.len = tenant->len + 1 + ORBIT_UUID_LEN;
        key.data = ngx_pnalloc(pool, key.len);
        if (key.data == NULL) {
            return NGX_ERROR;
        }

        ngx_sprintf(key.data, "%V/%s", tenant, id);

        return orbit_storage_s3_url(st, pool, &key, ttl, url);
    }

    base = ngx_http_orbit_public_url();
    if (base == NULL) {
        return NGX_DECLINED;
    }

    until = ngx_time() + ttl;

    if (orbit_media_sign(id, until, sig) != NGX_OK) {
        return NGX_ERROR;
    }

    url->len = base->len + sizeof("/api/v1/media//content?expires=&sig=")
               + ORBIT_UUID_LEN + NGX_TIME_T_LEN + ORBIT_MEDIA_SIG_LEN;
    url->data = ngx_pnalloc(pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    url->len = ngx_sprintf(url->data, "%V/api/v1/media/%s/content?expires=%T"
                           "&sig=%s", base, id, until, sig)
               - url->data;

    return NGX_OK;
}


/* HMAC-SHA256 under the encryption key, of "media:<id>:<expires>" */

static ngx_int_t
orbit_media_sign(const char *id, time_t expires,
    char sig[ORBIT_MEDIA_SIG_LEN + 1])
{
    u_char            msg[sizeof("media::") + ORBIT_UUID_LEN + NGX_TIME_T_LEN];
    u_char           *p;
    orbit_secrets_t  *secrets;
    char              mac[ORBIT_SHA256_HEX_LEN + 1];

    secrets = ngx_http_orbit_secrets();
    if (secrets == NULL || !secrets->has_encryption_key) {
        return NGX_ERROR;
    }

    p = ngx_snprintf(msg, sizeof(msg), "media:%s:%T", id, expires);

    if (orbit_hmac_sha256_hex(mac, secrets->encryption_key, 32, msg,
                              p - msg) != 0)
    {
        return NGX_ERROR;
    }

    ngx_memcpy(sig, mac, ORBIT_MEDIA_SIG_LEN);
    sig[ORBIT_MEDIA_SIG_LEN] = '\0';

    return NGX_OK;
}


/* type "/" subtype, then parameters: token characters, nothing else */

static ngx_int_t
orbit_media_mime_ok(ngx_str_t *mime)
{
    u_char      *p, *last;
    ngx_uint_t   slash;

    if (mime->len > 255) {
        return NGX_ERROR;
    }

    slash = 0;
    last = mime->data + mime->len;

    for (p = mime->data; p < last && *p != ';'; p++) {
        if (*p == '/') {
            if (slash++ || p == mime->data) {
                return NGX_ERROR;
            }

            continue;
        }

        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || *p == '!' || *p == '#'
              || *p == '$' || *p == '&' || *p == '-' || *p == '^'
              || *p == '_' || *p == '.' || *p == '+'))
        {
            return NGX_ERROR;
        }
    }

    if (!slash || p[-1] == '/') {
        return NGX_ERROR;
    }

    for ( /* void */ ; p < last; p++) {
        if (*p < 0x20 || *p == 0x7f) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * A media type as we store and send it: trimmed, its runs of spaces made
 * one (S3 signs it so), checked; "application/octet-stream" for anything
 * that is not one.  In pool.
 */

const char *
orbit_media_type(ngx_pool_t *pool, u_char *s, size_t len)
{
    u_char     *p, *d, *t;
    ngx_str_t   type;

    while (len && (*s == ' ' || *s == '\t')) {
        s++;
        len--;
    }

    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) {
        len--;
    }

    t = ngx_pnalloc(pool, len + 1);
    if (t == NULL) {
        return NULL;
    }

    d = t;

    for (p = s; p < s + len; p++) {
        if ((*p == ' ' || *p == '\t') && d > t && d[-1] == ' ') {
            continue;
        }

        *d++ = (*p == '\t') ? ' ' : *p;
    }

    *d = '\0';

    type.data = t;
    type.len = d - t;

    if (type.len == 0 || orbit_media_mime_ok(&type) != NGX_OK) {
        return "application/octet-stream";
    }

    return (char *) t;
}


/*
 * A file's name as we keep and show it: at most 255 bytes (whole UTF-8
 * characters), control characters, quotes, backslashes and slashes made
 * "_".  NULL when none is left.  In pool.
 */

const char *
orbit_media_filename(ngx_pool_t *pool, const char *name)
{
    u_char  *p, *d, *f;
    size_t   len;

    if (name == NULL) {
        return NULL;
    }

    len = ngx_strlen(name);

    if (len > ORBIT_MEDIA_MAX_NAME) {
        len = ORBIT_MEDIA_MAX_NAME;

        /* not in the middle of a character */
        while (len && ((u_char) name[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    f = ngx_pnalloc(pool, len + 1);
    if (f == NULL) {
        return NULL;
    }

    d = f;

    for (p = (u_char *) name; p < (u_char *) name + len; p++) {
        *d++ = (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\'
                || *p == '/') ? '_' : *p;
    }

    *d = '\0';

    return (d == f) ? NULL : (char *) f;
}


/* types a browser renders without running anything: shown inline */

static ngx_uint_t
orbit_media_inline(const char *mime)
{
    ngx_uint_t  i;

    static const char *const  safe[] = {
        "image/png", "image/jpeg", "image/gif", "image/webp", "audio/",
        "video/", "application/pdf", "text/plain", NULL
    };

    for (i = 0; safe[i]; i++) {
        if (ngx_strncasecmp((u_char *) mime, (u_char *) safe[i],
                            ngx_strlen(safe[i])) == 0)
        {
            return 1;
        }
    }

    return 0;
}
