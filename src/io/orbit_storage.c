/*
 * OrbitDesk: media storage, local disk or S3 (see orbit_storage.h).
 *
 * A put's bytes are copied once into a block of the heap that also holds
 * nginx's thread task: the thread hashes them (and, on local disk, writes
 * them out), so the worker never waits on the disk; the block outlives an
 * operation whose pool goes while the thread still runs (the completion
 * frees it then), and for S3 it is the PUT's body until the answer.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_thread_pool.h>

#include "core/orbit_sigv4.h"
#include "io/orbit_storage.h"


#define ORBIT_STORAGE_S3_TIMEOUT  120000


struct orbit_storage_task_s {
    orbit_storage_op_t          *op;           /* NULL: orphaned */
    u_char                      *data;
    size_t                       len;
    char                        *root;         /* local, else NULL */
    char                        *dir;
    char                        *tmp;
    char                        *path;
    char                         sha256[ORBIT_SHA256_HEX_LEN + 1];
    const char                  *step;         /* what failed, or NULL */
    int                          err;
    unsigned                     running:1;    /* in the thread */
};


static void orbit_storage_run(void *data, ngx_log_t *log);
static void orbit_storage_hashed(ngx_event_t *ev);
static ngx_int_t orbit_storage_s3_put(orbit_storage_op_t *op);
static void orbit_storage_s3_answered(orbit_http_req_t *req);
static void orbit_storage_finish(orbit_storage_op_t *op, ngx_int_t rc);
static void orbit_storage_cleanup(void *data);
static void orbit_storage_amz_date(char *out);
static ngx_int_t orbit_storage_header(orbit_http_req_t *req,
    ngx_pool_t *pool, const char *name, const char *value, size_t len);


const char *
orbit_storage_name(orbit_storage_t *st)
{
    return st->type == ORBIT_STORAGE_S3 ? "s3" : "local";
}


orbit_storage_op_t *
orbit_storage_op_create(ngx_pool_t *pool)
{
    orbit_storage_op_t  *op;
    ngx_pool_cleanup_t  *cln;

    op = ngx_pcalloc(pool, sizeof(orbit_storage_op_t));
    if (op == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = orbit_storage_cleanup;
    cln->data = op;

    op->pool = pool;

    return op;
}


ngx_int_t
orbit_storage_put(orbit_storage_op_t *op)
{
    u_char                *p, *slash;
    size_t                 size, plen;
    ngx_thread_task_t     *task;
    orbit_storage_t       *st;
    orbit_storage_task_t  *t;

    st = op->storage;

    plen = (st->type == ORBIT_STORAGE_LOCAL)
           ? 4 * (st->root.len + 1 + op->key.len + sizeof(".tmp")) : 0;

    size = sizeof(ngx_thread_task_t) + sizeof(orbit_storage_task_t) + plen
           + op->data.len;

    task = ngx_alloc(size, op->log);
    if (task == NULL) {
        return NGX_ERROR;
    }

    ngx_memzero(task, sizeof(ngx_thread_task_t)
                      + sizeof(orbit_storage_task_t));

    t = (orbit_storage_task_t *) (task + 1);
    p = (u_char *) (t + 1);

    t->op = op;
    t->len = op->data.len;

    if (plen) {
        /* root/tenant/id, its .tmp, root/tenant, root */

        t->path = (char *) p;
        p = ngx_sprintf(p, "%V/%V%Z", &st->root, &op->key);

        t->tmp = (char *) p;
        p = ngx_sprintf(p, "%s.tmp%Z", t->path);

        t->dir = (char *) p;
        p = ngx_sprintf(p, "%s%Z", t->path);

        /* the key's folder: "tenant/id" -> root/tenant */

        slash = ngx_strlchr((u_char *) t->dir + st->root.len + 1, p - 1,
                            '/');
        if (slash == NULL) {
            ngx_free(task);
            return NGX_ERROR;
        }

        *slash = '\0';

        t->root = (char *) p;
        p = ngx_sprintf(p, "%V%Z", &st->root);
    }

    t->data = p;
    ngx_memcpy(t->data, op->data.data, op->data.len);

    task->ctx = t;
    task->handler = orbit_storage_run;
    task->event.handler = orbit_storage_hashed;
    task->event.data = task;
    task->event.log = op->log;

    t->running = 1;

    if (ngx_thread_task_post(st->thread_pool, task) != NGX_OK) {
        ngx_free(task);
        return NGX_ERROR;
    }

    op->task = t;

    return NGX_OK;
}


/* in a thread: no nginx call, only the block's memory */

static void
orbit_storage_run(void *data, ngx_log_t *log)
{
    orbit_storage_task_t  *t = data;

    int      fd;
    size_t   done;
    ssize_t  n;

    orbit_sha256_hex(t->sha256, t->data, t->len);

    if (t->path == NULL) {
        return;                 /* S3: the hash is what was needed */
    }

    if (mkdir(t->dir, 0750) == -1 && errno != EEXIST) {

        /* the storage's own folder first, once */

        if (errno != ENOENT
            || (mkdir(t->root, 0750) == -1 && errno != EEXIST)
            || (mkdir(t->dir, 0750) == -1 && errno != EEXIST))
        {
            t->step = "mkdir";
            t->err = errno;
            return;
        }
    }

    fd = open(t->tmp, O_WRONLY|O_CREAT|O_TRUNC, 0640);
    if (fd == -1) {
        t->step = "open";
        t->err = errno;
        return;
    }

    for (done = 0; done < t->len; done += n) {
        n = write(fd, t->data + done, t->len - done);

        if (n == -1) {
            if (errno == EINTR) {
                n = 0;
                continue;
            }

            t->step = "write";
            t->err = errno;
            (void) close(fd);
            (void) unlink(t->tmp);
            return;
        }
    }

    if (fsync(fd) == -1) {
        t->step = "fsync";
        t->err = errno;
        (void) close(fd);
        (void) unlink(t->tmp);
        return;
    }

    if (close(fd) == -1 || rename(t->tmp, t->path) == -1) {
        t->step = "rename";
        t->err = errno;
        (void) unlink(t->tmp);
        return;
    }

    /* the rename itself lasts once its folder is synced too */

    fd = open(t->dir, O_RDONLY|O_DIRECTORY);

    if (fd == -1 || fsync(fd) == -1) {
        t->step = "fsync of the folder";
        t->err = errno;
    }

    if (fd != -1) {
        (void) close(fd);
    }
}


static void
orbit_storage_hashed(ngx_event_t *ev)
{
    ngx_thread_task_t  *task = ev->data;

    u_char                *p;
    orbit_storage_op_t    *op;
    orbit_storage_task_t  *t;
    u_char                 err[NGX_MAX_ERROR_STR];

    t = task->ctx;
    t->running = 0;
    op = t->op;

    if (op == NULL) {
        ngx_free(task);         /* its operation went meanwhile */
        return;
    }

    ngx_memcpy(op->sha256, t->sha256, sizeof(op->sha256));

    if (t->step) {
        p = ngx_strerror(t->err, err, sizeof(err));

        op->error.data = ngx_pnalloc(op->pool, 64 + ngx_strlen(t->path)
                                               + (p - err));
        if (op->error.data) {
            op->error.len = ngx_sprintf(op->error.data, "%s \"%s\": %*s",
                                        t->step, t->path, p - err, err)
                            - op->error.data;
        }

        ngx_log_error(NGX_LOG_ERR, op->log, t->err,
                      "media storage: %s \"%s\" failed", t->step, t->path);

        orbit_storage_finish(op, NGX_ERROR);
        return;
    }

    if (op->storage->type == ORBIT_STORAGE_LOCAL) {
        orbit_storage_finish(op, NGX_OK);
        return;
    }

    if (orbit_storage_s3_put(op) != NGX_OK) {
        if (op->error.len == 0) {
            ngx_str_set(&op->error, "the S3 request could not start");
        }

        orbit_storage_finish(op, NGX_ERROR);
    }
}


/* PUT {endpoint}/{bucket}/{key}, signed (SigV4) with the payload's hash */

static ngx_int_t
orbit_storage_s3_put(orbit_storage_op_t *op)
{
    u_char                *p;
    char                  *ctype;
    orbit_sigv4_t          s;
    orbit_storage_t       *st;
    orbit_http_req_t      *req;
    orbit_storage_task_t  *t;
    char                   date[20], auth[1024], path[1024];

    st = op->storage;
    t = op->task;

    if (st->secrets == NULL || st->secrets->s3_access_key_id[0] == '\0'
        || st->secrets->s3_secret_access_key[0] == '\0')
    {
        ngx_str_set(&op->error, "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY "
                                "are not in the secrets file");
        return NGX_ERROR;
    }

    p = ngx_snprintf((u_char *) path, sizeof(path) - 1, "/%V/%V%Z",
                     &st->bucket, &op->key);
    if (p == (u_char *) path + sizeof(path) - 1) {
        return NGX_ERROR;
    }

    ctype = (char *) ngx_pnalloc(op->pool, op->mime.len + 1);
    req = orbit_http_req_create(op->pool);

    if (ctype == NULL || req == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ctype, op->mime.data, op->mime.len);
    ctype[op->mime.len] = '\0';

    orbit_storage_amz_date(date);

    s.method = "PUT";
    s.host = (char *) st->host.data;
    s.path = path;
    s.region = (char *) st->region.data;
    s.service = "s3";
    s.access_key = st->secrets->s3_access_key_id;
    s.secret_key = st->secrets->s3_secret_access_key;
    s.amz_date = date;

    if (orbit_sigv4_authorization(&s, t->sha256, ctype, auth, sizeof(auth))
        != 0)
    {
        return NGX_ERROR;
    }

    req->url.len = st->endpoint.len + ngx_strlen(path);
    req->url.data = ngx_pnalloc(op->pool, req->url.len);
    if (req->url.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(req->url.data, "%V%s", &st->endpoint, path);

    ngx_str_set(&req->method, "PUT");
    req->body.data = t->data;
    req->body.len = t->len;
    req->timeout = ORBIT_STORAGE_S3_TIMEOUT;
    req->max_response = 64 * 1024;
    req->handler = orbit_storage_s3_answered;
    req->data = op;

    if (orbit_storage_header(req, op->pool, "Host", s.host,
                             st->host.len) != NGX_OK
        || orbit_storage_header(req, op->pool, "Content-Type", ctype,
                                op->mime.len) != NGX_OK
        || orbit_storage_header(req, op->pool, "x-amz-content-sha256",
                                t->sha256, ORBIT_SHA256_HEX_LEN) != NGX_OK
        || orbit_storage_header(req, op->pool, "x-amz-date", date,
                                ngx_strlen(date)) != NGX_OK
        || orbit_storage_header(req, op->pool, "Authorization", auth,
                                ngx_strlen(auth)) != NGX_OK)
    {
        return NGX_ERROR;
    }

    op->req = req;

    if (orbit_http_send(op->http, req) != NGX_OK) {
        op->error = req->error;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
orbit_storage_s3_answered(orbit_http_req_t *req)
{
    orbit_storage_op_t  *op = req->data;

    u_char  *p, c;
    size_t   i, len;

    if (req->status >= 200 && req->status < 300) {
        orbit_storage_finish(op, NGX_OK);
        return;
    }

    if (req->status == 0) {
        op->error = req->error;

    } else {
        len = ngx_min(req->response.len, 300);

        op->error.data = ngx_pnalloc(op->pool, 64 + len);
        if (op->error.data) {
            p = ngx_sprintf(op->error.data, "S3 answered %ui: ", req->status);

            /* S3's XML error on one line: it goes to the log */

            for (i = 0; i < len; i++) {
                c = req->response.data[i];
                *p++ = (c < 0x20 || c == 0x7f) ? ' ' : c;
            }

            op->error.len = p - op->error.data;
        }
    }

    ngx_log_error(NGX_LOG_ERR, op->log, 0, "media storage: PUT %V: %V",
                  &req->url, &op->error);

    orbit_storage_finish(op, NGX_ERROR);
}


/* the block goes, then the handler is called: exactly once */

static void
orbit_storage_finish(orbit_storage_op_t *op, ngx_int_t rc)
{
    orbit_storage_task_t  *t;

    t = op->task;
    op->task = NULL;
    op->req = NULL;
    op->rc = rc;

    if (t) {
        ngx_free((ngx_thread_task_t *) t - 1);
    }

    op->handler(op);
}


/* the operation's pool goes: the curl request has been cancelled by now
 * (its cleanup was added later, so it ran first) */

static void
orbit_storage_cleanup(void *data)
{
    orbit_storage_op_t  *op = data;

    orbit_storage_task_t  *t;

    t = op->task;

    if (t == NULL) {
        return;
    }

    op->task = NULL;

    if (t->running) {
        t->op = NULL;           /* the completion frees it */
        return;
    }

    ngx_free((ngx_thread_task_t *) t - 1);
}


u_char *
orbit_storage_path(orbit_storage_t *st, ngx_pool_t *pool, ngx_str_t *key)
{
    u_char  *path;

    path = ngx_pnalloc(pool, st->root.len + 1 + key->len + 1);
    if (path == NULL) {
        return NULL;
    }

    ngx_sprintf(path, "%V/%V%Z", &st->root, key);

    return path;
}


ngx_int_t
orbit_storage_s3_url(orbit_storage_t *st, ngx_pool_t *pool, ngx_str_t *key,
    time_t expires, ngx_str_t *url)
{
    u_char         *p;
    orbit_sigv4_t   s;
    char            date[20], path[1024], query[2048];

    if (st->secrets == NULL || st->secrets->s3_access_key_id[0] == '\0') {
        return NGX_ERROR;
    }

    p = ngx_snprintf((u_char *) path, sizeof(path) - 1, "/%V/%V%Z",
                     &st->bucket, key);
    if (p == (u_char *) path + sizeof(path) - 1) {
        return NGX_ERROR;
    }

    orbit_storage_amz_date(date);

    s.method = "GET";
    s.host = (char *) st->host.data;
    s.path = path;
    s.region = (char *) st->region.data;
    s.service = "s3";
    s.access_key = st->secrets->s3_access_key_id;
    s.secret_key = st->secrets->s3_secret_access_key;
    s.amz_date = date;

    if (orbit_sigv4_presign(&s, (long) expires, query, sizeof(query)) != 0) {
        return NGX_ERROR;
    }

    url->len = st->endpoint.len + ngx_strlen(path) + 1 + ngx_strlen(query);
    url->data = ngx_pnalloc(pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(url->data, "%V%s?%s", &st->endpoint, path, query);

    return NGX_OK;
}


/* now, as SigV4 wants it: YYYYMMDDTHHMMSSZ */

static void
orbit_storage_amz_date(char *out)
{
    ngx_tm_t  tm;

    ngx_gmtime(ngx_time(), &tm);

    (void) ngx_sprintf((u_char *) out, "%4d%02d%02dT%02d%02d%02dZ%Z",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);
}


static ngx_int_t
orbit_storage_header(orbit_http_req_t *req, ngx_pool_t *pool,
    const char *name, const char *value, size_t len)
{
    ngx_str_t  line;

    line.len = ngx_strlen(name) + 2 + len;
    line.data = ngx_pnalloc(pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(line.data, "%s: %*s", name, len, value);

    return orbit_http_req_header(req, &line);
}
