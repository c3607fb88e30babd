/*
 * OrbitDesk: media storage (orbit_media), on local disk or in an
 * S3-compatible bucket.
 *
 * A put takes bytes and a key ("<tenant>/<media id>"), hashes them
 * (SHA-256) and writes them, never on the event loop: on local disk the
 * hashing, the write to a temporary file, its fsync and the rename run in
 * nginx's thread pool; for S3 the hashing does, then a signed PUT
 * (Signature V4, path-style: {endpoint}/{bucket}/{key}) goes through the
 * curl client.  Its handler is called exactly once, never from inside
 * orbit_storage_put(), unless the operation's pool goes first (then
 * never).
 *
 * Reading: a local file is served by the caller (sendfile); an S3 object
 * through a presigned URL (orbit_storage_s3_url).
 */

#ifndef _ORBIT_STORAGE_H_INCLUDED_
#define _ORBIT_STORAGE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_thread_pool.h>

#include "core/orbit_core.h"
#include "io/orbit_http_client.h"


typedef enum {
    ORBIT_STORAGE_LOCAL = 1,
    ORBIT_STORAGE_S3
} orbit_storage_type_e;


typedef struct {
    orbit_storage_type_e         type;
    ngx_str_t                    root;         /* local: no trailing "/" */
    ngx_str_t                    endpoint;     /* s3: scheme://host[:port] */
    ngx_str_t                    host;         /* s3: host[:port] */
    ngx_str_t                    bucket;
    ngx_str_t                    region;
    size_t                       max_size;     /* orbit_media_max_size */
    ngx_array_t                 *fetch_allow;  /* of ngx_cidr_t: private
                                                  addresses media may be
                                                  fetched from */
    orbit_secrets_t             *secrets;      /* s3: the key pair */
    ngx_thread_pool_t           *thread_pool;
} orbit_storage_t;


typedef struct orbit_storage_op_s    orbit_storage_op_t;
typedef struct orbit_storage_task_s  orbit_storage_task_t;

typedef void (*orbit_storage_done_pt)(orbit_storage_op_t *op);


struct orbit_storage_op_s {
    /* in */
    orbit_storage_t             *storage;
    orbit_http_client_t         *http;         /* s3 */
    ngx_str_t                    key;
    ngx_str_t                    mime;
    ngx_str_t                    data;         /* copied by put */
    orbit_storage_done_pt        handler;
    void                        *ctx;
    ngx_log_t                   *log;

    /* out */
    ngx_int_t                    rc;           /* NGX_OK: stored */
    char                         sha256[ORBIT_SHA256_HEX_LEN + 1];
    ngx_str_t                    error;

    /* private */
    ngx_pool_t                  *pool;
    orbit_storage_task_t        *task;
    orbit_http_req_t            *req;
};


/* the storage's name in the media table: "local" or "s3" */
const char *orbit_storage_name(orbit_storage_t *st);

orbit_storage_op_t *orbit_storage_op_create(ngx_pool_t *pool);

/* NGX_OK: started, the handler follows; NGX_ERROR: not started */
ngx_int_t orbit_storage_put(orbit_storage_op_t *op);

/* a local object's path, nul-terminated, in pool; NULL on error */
u_char *orbit_storage_path(orbit_storage_t *st, ngx_pool_t *pool,
    ngx_str_t *key);

/* an S3 object's presigned GET URL, valid for expires seconds */
ngx_int_t orbit_storage_s3_url(orbit_storage_t *st, ngx_pool_t *pool,
    ngx_str_t *key, time_t expires, ngx_str_t *url);


#endif /* _ORBIT_STORAGE_H_INCLUDED_ */
