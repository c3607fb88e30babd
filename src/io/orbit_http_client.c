/*
 * OrbitDesk: outbound HTTP through libcurl's multi-socket interface.
 *
 * One CURLM per worker.  curl tells us which sockets to watch (socket
 * callback) and when to wake it up (timer callback); nginx events and one
 * nginx timer drive curl_multi_socket_action().  Finished transfers are
 * collected with curl_multi_info_read() after socket_action returns, so a
 * request's handler never runs inside a curl callback nor inside
 * orbit_http_send().
 *
 * curl owns every socket: nginx only wraps the fd in an ngx_connection_t to
 * get events, and never closes it.  A small wrapper (orbit_http_sock_t) is
 * what curl_multi_assign() maps a socket to: it outlives the nginx
 * connection when curl closes a socket before telling us to stop watching
 * it, so a late CURL_POLL_REMOVE, or a new socket that got the same fd
 * number, never touches a connection that nginx has handed out again.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <curl/curl.h>

#include "io/orbit_http_client.h"


#define ORBIT_HTTP_DEFAULT_TIMEOUT  30000
#define ORBIT_HTTP_DEFAULT_MAX      (8 * 1024 * 1024)
#define ORBIT_HTTP_BUF_MIN          4096
#define ORBIT_HTTP_REPLY_MAX        65536   /* a mail server's lines */


typedef struct {
    ngx_connection_t            *conn;     /* NULL once curl closed the fd */
    curl_socket_t                fd;
    ino_t                        ino;      /* which socket fd was */
    orbit_http_client_t         *client;
    ngx_queue_t                  queue;    /* in client->socks or ->free */
} orbit_http_sock_t;


/* The request as orbit_http_req_create() allocates it. */
typedef struct {
    orbit_http_req_t             req;      /* must be first */
    struct curl_slist           *slist;
    struct curl_slist           *rcpt;     /* SMTP's recipients */
    size_t                       capacity; /* of req.response.data */
    size_t                       max;
    size_t                       uploaded; /* of req.body, SMTP */
    size_t                       reply_cap;
    ngx_queue_t                  queue;    /* in client->xfers or ->failed */
    ngx_str_t                    fail;     /* set by the socket callback */
    unsigned                     too_large:1;
    unsigned                     refused:1; /* not a public address */
    unsigned                     mail:1;   /* not HTTP: SMTP, IMAP */
    char                         errbuf[CURL_ERROR_SIZE];
} orbit_http_xfer_t;


struct orbit_http_client_s {
    CURLM                       *multi;
    ngx_log_t                   *log;
    ngx_pool_t                  *pool;
    ngx_connection_t             ident;    /* ev->data of the events below */
    ngx_event_t                  timer;    /* curl's TIMERFUNCTION */
    ngx_event_t                  reap;     /* fails queued transfers */
    ngx_queue_t                  xfers;    /* running transfers */
    ngx_queue_t                  failed;   /* to finish with xfer->fail */
    ngx_queue_t                  socks;    /* wrappers curl knows */
    ngx_queue_t                  free;     /* wrappers to reuse */
    ngx_uint_t                   nxfers;
    unsigned                     global:1; /* curl_global_init() done */
};


static int orbit_http_socket_cb(CURL *easy, curl_socket_t s, int what,
    void *userp, void *socketp);
static int orbit_http_timer_cb(CURLM *multi, long timeout_ms, void *userp);
static int orbit_http_close_cb(void *clientp, curl_socket_t fd);
static size_t orbit_http_write_cb(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t orbit_http_header_cb(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t orbit_http_read_cb(char *ptr, size_t size, size_t nmemb,
    void *userdata);
static size_t orbit_http_reply_line(orbit_http_xfer_t *x, u_char *line,
    size_t n);

static ngx_int_t orbit_http_sock_attach(orbit_http_sock_t *sock,
    curl_socket_t s);
static void orbit_http_sock_detach(orbit_http_sock_t *sock,
    ngx_uint_t closed);
static ngx_uint_t orbit_http_sock_closed(orbit_http_sock_t *sock);
static ngx_int_t orbit_http_sock_events(orbit_http_sock_t *sock, int what);
static void orbit_http_sock_free(orbit_http_sock_t *sock);
static void orbit_http_sock_handler(ngx_event_t *ev);
static void orbit_http_timer_handler(ngx_event_t *ev);
static void orbit_http_reap_handler(ngx_event_t *ev);
static void orbit_http_check_done(orbit_http_client_t *hc);
static void orbit_http_finish(orbit_http_xfer_t *x, CURLcode rc);
static void orbit_http_release(orbit_http_xfer_t *x);
static ngx_int_t orbit_http_setup(orbit_http_xfer_t *x, CURL *easy);
static ngx_int_t orbit_http_setup_mail(orbit_http_xfer_t *x, CURL *easy,
    ngx_str_t *method);
static ngx_int_t orbit_http_fail(orbit_http_req_t *req, const char *text);
static void orbit_http_req_cleanup(void *data);
static curl_socket_t orbit_http_open_cb(void *clientp,
    curlsocktype purpose, struct curl_sockaddr *address);
static ngx_uint_t orbit_http_public(struct sockaddr *sa);


orbit_http_client_t *
orbit_http_client_create(ngx_cycle_t *cycle)
{
    orbit_http_client_t  *hc;

    hc = ngx_pcalloc(cycle->pool, sizeof(orbit_http_client_t));
    if (hc == NULL) {
        return NULL;
    }

    hc->log = cycle->log;
    hc->pool = cycle->pool;

    ngx_queue_init(&hc->xfers);
    ngx_queue_init(&hc->failed);
    ngx_queue_init(&hc->socks);
    ngx_queue_init(&hc->free);

    /*
     * debug builds log a timer with the fd of the connection in ev->data:
     * give them one, with no fd
     */

    hc->ident.fd = (ngx_socket_t) -1;
    hc->ident.data = hc;
    hc->ident.log = hc->log;

    hc->timer.handler = orbit_http_timer_handler;
    hc->timer.data = &hc->ident;
    hc->timer.log = hc->log;
    hc->timer.cancelable = 1;

    hc->reap.handler = orbit_http_reap_handler;
    hc->reap.data = &hc->ident;
    hc->reap.log = hc->log;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        ngx_log_error(NGX_LOG_EMERG, hc->log, 0,
                      "orbit http: curl_global_init() failed");
        return NULL;
    }

    hc->global = 1;

    hc->multi = curl_multi_init();
    if (hc->multi == NULL) {
        ngx_log_error(NGX_LOG_EMERG, hc->log, 0,
                      "orbit http: curl_multi_init() failed");
        curl_global_cleanup();
        return NULL;
    }

    if (curl_multi_setopt(hc->multi, CURLMOPT_SOCKETFUNCTION,
                          orbit_http_socket_cb) != CURLM_OK
        || curl_multi_setopt(hc->multi, CURLMOPT_SOCKETDATA, hc) != CURLM_OK
        || curl_multi_setopt(hc->multi, CURLMOPT_TIMERFUNCTION,
                             orbit_http_timer_cb) != CURLM_OK
        || curl_multi_setopt(hc->multi, CURLMOPT_TIMERDATA, hc) != CURLM_OK)
    {
        ngx_log_error(NGX_LOG_EMERG, hc->log, 0,
                      "orbit http: curl_multi_setopt() failed");
        curl_multi_cleanup(hc->multi);
        curl_global_cleanup();
        return NULL;
    }

    /* curl_version() would initialise libldap and libsasl for nothing */
    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, hc->log, 0,
                   "orbit http: client created, libcurl %s",
                   curl_version_info(CURLVERSION_NOW)->version);

    return hc;
}


void
orbit_http_client_destroy(orbit_http_client_t *hc)
{
    ngx_queue_t        *q;
    orbit_http_sock_t  *sock;
    orbit_http_xfer_t  *x;

    if (hc == NULL || hc->multi == NULL) {
        return;
    }

    /* cancel every transfer: no handler runs from here on */

    while (!ngx_queue_empty(&hc->failed)) {
        q = ngx_queue_head(&hc->failed);
        x = ngx_queue_data(q, orbit_http_xfer_t, queue);
        orbit_http_cancel(&x->req);
    }

    while (!ngx_queue_empty(&hc->xfers)) {
        q = ngx_queue_head(&hc->xfers);
        x = ngx_queue_data(q, orbit_http_xfer_t, queue);
        orbit_http_cancel(&x->req);
    }

    /* closes the cached connections through orbit_http_close_cb() */

    curl_multi_cleanup(hc->multi);
    hc->multi = NULL;

    if (hc->timer.timer_set) {
        ngx_del_timer(&hc->timer);
    }

    if (hc->reap.posted) {
        ngx_delete_posted_event(&hc->reap);
    }

    /*
     * curl has closed all its sockets by now: a wrapper still holding a
     * connection lost its fd without a CURL_POLL_REMOVE; release the
     * connection, or the worker would report an open socket at exit.
     */

    while (!ngx_queue_empty(&hc->socks)) {
        q = ngx_queue_head(&hc->socks);
        sock = ngx_queue_data(q, orbit_http_sock_t, queue);

        if (sock->conn) {
            orbit_http_sock_detach(sock, 1);
        }

        orbit_http_sock_free(sock);
    }

    if (hc->global) {
        curl_global_cleanup();
        hc->global = 0;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_EVENT, hc->log, 0,
                   "orbit http: client destroyed");
}


orbit_http_req_t *
orbit_http_req_create(ngx_pool_t *pool)
{
    orbit_http_xfer_t   *x;
    ngx_pool_cleanup_t  *cln;

    x = ngx_pcalloc(pool, sizeof(orbit_http_xfer_t));
    if (x == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = orbit_http_req_cleanup;
    cln->data = x;

    x->req.pool = pool;

    return &x->req;
}


ngx_int_t
orbit_http_req_header(orbit_http_req_t *req, ngx_str_t *line)
{
    ngx_str_t  *h;

    if (req->headers == NULL) {
        req->headers = ngx_array_create(req->pool, 4, sizeof(ngx_str_t));
        if (req->headers == NULL) {
            return NGX_ERROR;
        }
    }

    h = ngx_array_push(req->headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = *line;

    return NGX_OK;
}


ngx_int_t
orbit_http_send(orbit_http_client_t *hc, orbit_http_req_t *req)
{
    CURL               *easy;
    CURLMcode           mrc;
    orbit_http_xfer_t  *x;

    x = (orbit_http_xfer_t *) req;

    if (req->easy) {
        /* its response is still being written */
        ngx_log_error(NGX_LOG_ALERT, req->pool->log, 0,
                      "orbit http: %V sent twice", &req->url);
        return NGX_ERROR;
    }

    req->status = 0;
    ngx_str_null(&req->response);
    ngx_str_null(&req->error);
    req->timedout = 0;
    req->too_large = 0;
    req->refused = 0;
    req->response_headers = NULL;
    ngx_str_null(&req->reply);
    req->result = 0;

    x->capacity = 0;
    x->uploaded = 0;
    x->reply_cap = 0;
    x->too_large = 0;
    x->refused = 0;
    x->errbuf[0] = '\0';
    ngx_str_null(&x->fail);

    if (hc == NULL || hc->multi == NULL) {
        return orbit_http_fail(req, "http client not available");
    }

    if (req->url.len == 0) {
        return orbit_http_fail(req, "empty url");
    }

    req->response_headers = ngx_array_create(req->pool, 8,
                                             sizeof(ngx_table_elt_t));
    if (req->response_headers == NULL) {
        return orbit_http_fail(req, "out of memory");
    }

    easy = curl_easy_init();
    if (easy == NULL) {
        return orbit_http_fail(req, "curl_easy_init() failed");
    }

    req->client = hc;

    if (orbit_http_setup(x, easy) != NGX_OK) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(x->slist);
        curl_slist_free_all(x->rcpt);
        x->slist = NULL;
        x->rcpt = NULL;

        if (req->error.len == 0) {
            return orbit_http_fail(req, "could not set up the transfer");
        }

        return NGX_ERROR;
    }

    /* calls orbit_http_timer_cb() only: the transfer starts from a timer */

    mrc = curl_multi_add_handle(hc->multi, easy);

    if (mrc != CURLM_OK) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(x->slist);
        curl_slist_free_all(x->rcpt);
        x->slist = NULL;
        x->rcpt = NULL;
        return orbit_http_fail(req, curl_multi_strerror(mrc));
    }

    req->easy = easy;
    ngx_queue_insert_tail(&hc->xfers, &x->queue);
    hc->nxfers++;

    /*
     * a worker shutting down gracefully waits for non-cancelable timers
     * only: running transfers keep it, like upstream timeouts do
     */

    hc->timer.cancelable = 0;

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, req->pool->log, 0,
                   "orbit http: %V %V started, running:%ui",
                   &req->method, &req->url, hc->nxfers);

    return NGX_OK;
}


void
orbit_http_cancel(orbit_http_req_t *req)
{
    orbit_http_xfer_t  *x;

    if (req->easy == NULL) {
        return;
    }

    x = (orbit_http_xfer_t *) req;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, req->pool->log, 0,
                   "orbit http: %V canceled", &req->url);

    /*
     * never called from inside a curl callback, so removing the handle is
     * safe here; curl may call the socket and timer callbacks meanwhile
     */

    orbit_http_release(x);
}


static ngx_int_t
orbit_http_setup(orbit_http_xfer_t *x, CURL *easy)
{
    u_char             *p;
    ngx_str_t          *h, method;
    ngx_uint_t          i, post, custom, body;
    ngx_msec_t          timeout;
    orbit_http_req_t   *req;
    struct curl_slist  *sl;

    req = &x->req;

    method = req->method;
    if (method.len == 0) {
        ngx_str_set(&method, "GET");
    }

    x->max = req->max_response ? req->max_response : ORBIT_HTTP_DEFAULT_MAX;
    timeout = req->timeout ? req->timeout : ORBIT_HTTP_DEFAULT_TIMEOUT;

    /* curl copies string options, so these copies may stay in the pool */

    p = ngx_pnalloc(req->pool, req->url.len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    (void) ngx_cpystrn(p, req->url.data, req->url.len + 1);

    if (curl_easy_setopt(easy, CURLOPT_URL, p) != CURLE_OK) {
        (void) orbit_http_fail(req, "bad url");
        return NGX_ERROR;
    }

    /* which protocols a URL may name is the caller's choice: http(s) */

    x->mail = (req->url.len > 4
               && (ngx_strncasecmp(req->url.data, (u_char *) "smtp", 4) == 0
                   || ngx_strncasecmp(req->url.data, (u_char *) "imap", 4)
                      == 0));

    if (curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR,
                         req->protocols ? req->protocols : "http,https")
        != CURLE_OK
        || curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https")
           != CURLE_OK)
    {
        return NGX_ERROR;
    }

    (void) curl_easy_setopt(easy, CURLOPT_PRIVATE, x);
    (void) curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, x->errbuf);
    (void) curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    (void) curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
    (void) curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) timeout);
    (void) curl_easy_setopt(easy, CURLOPT_USERAGENT,
                            "OrbitDesk (libcurl)");

    /* Content-Length above the limit fails before any byte is stored */

    (void) curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE,
                            (curl_off_t) x->max);

    /*
     * a canceled transfer must not wait for the threaded resolver to
     * finish a lookup: curl detaches the thread instead
     */

    (void) curl_easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);

    if (req->fresh) {
        (void) curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
        (void) curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
    }

    (void) curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, orbit_http_write_cb);
    (void) curl_easy_setopt(easy, CURLOPT_WRITEDATA, x);
    (void) curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION,
                            orbit_http_header_cb);
    (void) curl_easy_setopt(easy, CURLOPT_HEADERDATA, x);

    /* tells us about every socket curl closes, see orbit_http_close_cb() */

    (void) curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION,
                            orbit_http_close_cb);
    (void) curl_easy_setopt(easy, CURLOPT_CLOSESOCKETDATA, req->client);

    /* each address curl is about to connect to, checked first */

    (void) curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION,
                            req->public_only ? orbit_http_open_cb : NULL);
    (void) curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA,
                            req->public_only ? x : NULL);

    if (x->mail) {
        return orbit_http_setup_mail(x, easy, &method);
    }

    /* method and body */

    post = (method.len == 4 && ngx_strncmp(method.data, "POST", 4) == 0);

    body = req->body.len
           || post
           || (method.len == 3 && ngx_strncmp(method.data, "PUT", 3) == 0)
           || (method.len == 5 && ngx_strncmp(method.data, "PATCH", 5) == 0);

    custom = !post
             && !(method.len == 3 && ngx_strncmp(method.data, "GET", 3) == 0
                  && !body);

    if (method.len == 4 && ngx_strncmp(method.data, "HEAD", 4) == 0
        && !body)
    {
        /* a custom HEAD would wait for a body that never comes */
        (void) curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        custom = 0;
    }

    if (body) {
        /* not copied: req->body lives as long as the transfer */
        (void) curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE,
                                (curl_off_t) req->body.len);
        (void) curl_easy_setopt(easy, CURLOPT_POSTFIELDS,
                                req->body.data ? (char *) req->body.data
                                               : "");
    }

    if (custom) {
        p = ngx_pnalloc(req->pool, method.len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn(p, method.data, method.len + 1);
        (void) curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, p);
    }

    /* request headers */

    if (req->headers && req->headers->nelts) {
        h = req->headers->elts;

        for (i = 0; i < req->headers->nelts; i++) {
            p = ngx_pnalloc(req->pool, h[i].len + 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            (void) ngx_cpystrn(p, h[i].data, h[i].len + 1);

            sl = curl_slist_append(x->slist, (char *) p);
            if (sl == NULL) {
                return NGX_ERROR;
            }

            x->slist = sl;
        }

        (void) curl_easy_setopt(easy, CURLOPT_HTTPHEADER, x->slist);
    }

    return NGX_OK;
}


/*
 * SMTP: the envelope and the message uploaded from req->body; IMAP: the
 * URL's fetch, or a custom command.  Strings are copied by curl, lists
 * are not: x->rcpt lives as long as the transfer.
 */

static ngx_int_t
orbit_http_setup_mail(orbit_http_xfer_t *x, CURL *easy, ngx_str_t *method)
{
    u_char             *p;
    ngx_str_t          *rcpt;
    ngx_uint_t          i;
    orbit_http_req_t   *req;
    struct curl_slist  *sl;

    req = &x->req;

    if (req->username.len) {
        p = ngx_pnalloc(req->pool, req->username.len + req->password.len + 2);
        if (p == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn(p, req->username.data, req->username.len + 1);
        (void) ngx_cpystrn(p + req->username.len + 1, req->password.data,
                           req->password.len + 1);

        if (curl_easy_setopt(easy, CURLOPT_USERNAME, p) != CURLE_OK
            || curl_easy_setopt(easy, CURLOPT_PASSWORD,
                                p + req->username.len + 1)
               != CURLE_OK)
        {
            return NGX_ERROR;
        }
    }

    /* plain smtp:// and imap:// take STARTTLS when the server offers it */

    (void) curl_easy_setopt(easy, CURLOPT_USE_SSL, (long) CURLUSESSL_TRY);

    if (req->mail_from.len) {
        p = ngx_pnalloc(req->pool, req->mail_from.len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn(p, req->mail_from.data, req->mail_from.len + 1);

        if (curl_easy_setopt(easy, CURLOPT_MAIL_FROM, p) != CURLE_OK) {
            return NGX_ERROR;
        }

        rcpt = req->mail_rcpt ? req->mail_rcpt->elts : NULL;

        for (i = 0; rcpt && i < req->mail_rcpt->nelts; i++) {
            p = ngx_pnalloc(req->pool, rcpt[i].len + 1);
            if (p == NULL) {
                return NGX_ERROR;
            }

            (void) ngx_cpystrn(p, rcpt[i].data, rcpt[i].len + 1);

            sl = curl_slist_append(x->rcpt, (char *) p);
            if (sl == NULL) {
                return NGX_ERROR;
            }

            x->rcpt = sl;
        }

        if (x->rcpt == NULL) {
            (void) orbit_http_fail(req, "no recipient");
            return NGX_ERROR;
        }

        (void) curl_easy_setopt(easy, CURLOPT_MAIL_RCPT, x->rcpt);
        (void) curl_easy_setopt(easy, CURLOPT_UPLOAD, 1L);
        (void) curl_easy_setopt(easy, CURLOPT_READFUNCTION,
                                orbit_http_read_cb);
        (void) curl_easy_setopt(easy, CURLOPT_READDATA, x);
        (void) curl_easy_setopt(easy, CURLOPT_INFILESIZE_LARGE,
                                (curl_off_t) req->body.len);

        return NGX_OK;
    }

    if (req->method.len) {
        p = ngx_pnalloc(req->pool, method->len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        (void) ngx_cpystrn(p, method->data, method->len + 1);
        (void) curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, p);
    }

    return NGX_OK;
}


static ngx_int_t
orbit_http_fail(orbit_http_req_t *req, const char *text)
{
    req->error.len = ngx_strlen(text);
    req->error.data = ngx_pnalloc(req->pool, req->error.len);

    if (req->error.data == NULL) {
        ngx_str_set(&req->error, "out of memory");
        return NGX_ERROR;
    }

    ngx_memcpy(req->error.data, text, req->error.len);

    return NGX_ERROR;
}


static void
orbit_http_req_cleanup(void *data)
{
    orbit_http_xfer_t  *x = data;

    orbit_http_cancel(&x->req);
}


/*
 * Detaches a transfer from curl and from the client's lists.  The caller
 * is outside every curl callback.
 */

static void
orbit_http_release(orbit_http_xfer_t *x)
{
    CURL                 *easy;
    orbit_http_req_t     *req;
    orbit_http_client_t  *hc;

    req = &x->req;
    hc = req->client;
    easy = req->easy;

    req->easy = NULL;

    ngx_queue_remove(&x->queue);

    if (--hc->nxfers == 0) {
        hc->timer.cancelable = 1;
    }

    if (hc->multi) {
        (void) curl_multi_remove_handle(hc->multi, easy);
    }

    curl_easy_cleanup(easy);

    curl_slist_free_all(x->slist);
    curl_slist_free_all(x->rcpt);
    x->slist = NULL;
    x->rcpt = NULL;
}


/* curl's socket callback: watch s for what curl asks, or stop watching */

static int
orbit_http_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp,
    void *socketp)
{
    orbit_http_client_t *hc = userp;

    char               *priv;
    ngx_queue_t        *q;
    orbit_http_sock_t  *sock, *old;
    orbit_http_xfer_t  *x;

    sock = socketp;

    ngx_log_debug4(NGX_LOG_DEBUG_EVENT, hc->log, 0,
                   "orbit http: socket %d what:%d sock:%p conn:%p",
                   s, what, sock, sock ? sock->conn : NULL);

    if (what == CURL_POLL_REMOVE) {
        if (sock) {
            if (sock->conn) {
                /*
                 * curl means to say REMOVE before it closes, but a timed
                 * out connect, for one, closes first (curl 7.88)
                 */
                orbit_http_sock_detach(sock, orbit_http_sock_closed(sock));
            }

            orbit_http_sock_free(sock);
            (void) curl_multi_assign(hc->multi, s, NULL);
        }

        return 0;
    }

    if (sock == NULL) {

        /*
         * A wrapper of ours still on this fd number lost its socket without
         * a REMOVE (curl closed it and the number was reused): the kernel
         * dropped its epoll registration along with the old file.
         */

        for (q = ngx_queue_head(&hc->socks);
             q != ngx_queue_sentinel(&hc->socks);
             q = ngx_queue_next(q))
        {
            old = ngx_queue_data(q, orbit_http_sock_t, queue);

            if (old->conn && old->fd == s) {
                orbit_http_sock_detach(old, 1);
            }
        }

        if (ngx_queue_empty(&hc->free)) {
            sock = ngx_palloc(hc->pool, sizeof(orbit_http_sock_t));
            if (sock == NULL) {
                goto failed;
            }

        } else {
            q = ngx_queue_head(&hc->free);
            ngx_queue_remove(q);
            sock = ngx_queue_data(q, orbit_http_sock_t, queue);
        }

        sock->conn = NULL;
        sock->fd = s;
        sock->client = hc;
        ngx_queue_insert_tail(&hc->socks, &sock->queue);

        (void) curl_multi_assign(hc->multi, s, sock);
    }

    if (sock->conn && (sock->fd != s || orbit_http_sock_closed(sock))) {
        /* the fd curl gave us before was closed, the number reused */
        orbit_http_sock_detach(sock, 1);
    }

    if (sock->conn == NULL) {
        if (orbit_http_sock_attach(sock, s) != NGX_OK) {
            goto failed;
        }
    }

    if (orbit_http_sock_events(sock, what) != NGX_OK) {
        goto failed;
    }

    return 0;

failed:

    /*
     * Returning -1 would mark the whole multi handle dead: fail only this
     * transfer, from a posted event, outside curl.
     */

    priv = NULL;

    if (easy) {
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    }

    x = (orbit_http_xfer_t *) priv;

    if (x && x->req.easy && x->fail.len == 0) {
        ngx_str_set(&x->fail, "no connection available for the socket");
        ngx_queue_remove(&x->queue);
        ngx_queue_insert_tail(&hc->failed, &x->queue);

        if (!hc->reap.posted) {
            ngx_post_event(&hc->reap, &ngx_posted_events);
        }
    }

    return 0;
}


static ngx_int_t
orbit_http_sock_attach(orbit_http_sock_t *sock, curl_socket_t s)
{
    ngx_file_info_t    fi;
    ngx_connection_t  *c;

    if (ngx_fd_info(s, &fi) == NGX_FILE_ERROR) {
        ngx_log_error(NGX_LOG_ALERT, sock->client->log, ngx_errno,
                      "orbit http: fstat() socket %d failed", s);
        return NGX_ERROR;
    }

    c = ngx_get_connection(s, sock->client->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = sock;
    c->log = sock->client->log;

    c->read->handler = orbit_http_sock_handler;
    c->read->log = c->log;
    c->write->handler = orbit_http_sock_handler;
    c->write->log = c->log;

    sock->conn = c;
    sock->fd = s;
    sock->ino = fi.st_ino;

    return NGX_OK;
}


/*
 * Whether the fd no longer is the socket the wrapper was attached to:
 * curl closed it behind our back, and maybe the number went to another
 * file since, whose epoll registration must not be touched.
 */

static ngx_uint_t
orbit_http_sock_closed(orbit_http_sock_t *sock)
{
    ngx_file_info_t  fi;

    if (ngx_fd_info(sock->fd, &fi) == NGX_FILE_ERROR) {
        return 1;
    }

    return fi.st_ino != sock->ino || !S_ISSOCK(fi.st_mode);
}


/*
 * Gives the nginx connection back without closing the fd, which is curl's.
 * closed: the fd is gone already, and so is its epoll registration.
 */

static void
orbit_http_sock_detach(orbit_http_sock_t *sock, ngx_uint_t closed)
{
    ngx_uint_t         flags;
    ngx_connection_t  *c;

    c = sock->conn;
    flags = closed ? NGX_CLOSE_EVENT : 0;

    if (c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, flags);
    }

    if (c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, flags);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    /* stale events of this epoll round are ignored for fd -1 */

    c->fd = (ngx_socket_t) -1;
    ngx_free_connection(c);

    sock->conn = NULL;
}


static ngx_int_t
orbit_http_sock_events(orbit_http_sock_t *sock, int what)
{
    ngx_connection_t  *c;

    c = sock->conn;

    /* level-triggered: curl may leave data unread until its next call */

    if (what & CURL_POLL_IN) {
        if (!c->read->active
            && ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (what & CURL_POLL_OUT) {
        if (!c->write->active
            && ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
               != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
orbit_http_sock_free(orbit_http_sock_t *sock)
{
    ngx_queue_remove(&sock->queue);
    ngx_queue_insert_tail(&sock->client->free, &sock->queue);
}


/*
 * curl's close callback: curl closes its sockets here.  Normally curl said
 * CURL_POLL_REMOVE before; if it did not, the wrapper lets go of its
 * connection now, while the fd is still open.
 */

static int
orbit_http_close_cb(void *clientp, curl_socket_t fd)
{
    orbit_http_client_t *hc = clientp;

    ngx_queue_t        *q;
    orbit_http_sock_t  *sock;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, hc->log, 0,
                   "orbit http: close socket %d", fd);

    for (q = ngx_queue_head(&hc->socks);
         q != ngx_queue_sentinel(&hc->socks);
         q = ngx_queue_next(q))
    {
        sock = ngx_queue_data(q, orbit_http_sock_t, queue);

        if (sock->conn && sock->fd == fd) {
            ngx_log_debug1(NGX_LOG_DEBUG_EVENT, hc->log, 0,
                           "orbit http: socket %d closed before REMOVE", fd);

            /* closing the fd drops its epoll registration */
            orbit_http_sock_detach(sock, 1);
        }
    }

    if (close(fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, hc->log, ngx_socket_errno,
                      "orbit http: close() socket %d failed", fd);
        return 1;
    }

    return 0;
}


static int
orbit_http_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    orbit_http_client_t *hc = userp;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, hc->log, 0,
                   "orbit http: timer %l", timeout_ms);

    /*
     * ngx_add_timer() keeps a timer that is set within 300 ms of the new
     * expiry: delete first so curl gets exactly the time it asked for.
     * 0 ms expires on the next turn of the event loop, never right here.
     */

    if (hc->timer.timer_set) {
        ngx_del_timer(&hc->timer);
    }

    if (timeout_ms >= 0) {
        ngx_add_timer(&hc->timer, (ngx_msec_t) timeout_ms);
    }

    return 0;
}


static void
orbit_http_sock_handler(ngx_event_t *ev)
{
    int                   running;
    ngx_connection_t     *c;
    orbit_http_sock_t    *sock;
    orbit_http_client_t  *hc;

    c = ev->data;
    sock = c->data;
    hc = sock->client;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, hc->log, 0,
                   "orbit http: socket %d %s ready",
                   c->fd, ev->write ? "write" : "read");

    /* may detach and free c: do not touch it afterwards */

    (void) curl_multi_socket_action(hc->multi, c->fd,
                                    ev->write ? CURL_CSELECT_OUT
                                              : CURL_CSELECT_IN,
                                    &running);

    orbit_http_check_done(hc);
}


static void
orbit_http_timer_handler(ngx_event_t *ev)
{
    int                   running;
    ngx_connection_t     *c;
    orbit_http_client_t  *hc;

    c = ev->data;
    hc = c->data;
    ev->timedout = 0;

    (void) curl_multi_socket_action(hc->multi, CURL_SOCKET_TIMEOUT, 0,
                                    &running);

    orbit_http_check_done(hc);
}


static void
orbit_http_reap_handler(ngx_event_t *ev)
{
    ngx_connection_t  *c;

    c = ev->data;

    orbit_http_check_done(c->data);
}


/*
 * Runs handlers of finished transfers, one message at a time: a handler
 * may cancel or start other transfers, which curl_multi_info_read() and
 * the failed queue both tolerate.
 */

static void
orbit_http_check_done(orbit_http_client_t *hc)
{
    int                 left;
    char               *priv;
    CURL               *easy;
    CURLMsg            *msg;
    CURLcode            rc;
    ngx_queue_t        *q;
    orbit_http_xfer_t  *x;

    while (hc->multi) {
        msg = curl_multi_info_read(hc->multi, &left);
        if (msg == NULL) {
            break;
        }

        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        easy = msg->easy_handle;
        rc = msg->data.result;

        priv = NULL;
        (void) curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);

        x = (orbit_http_xfer_t *) priv;

        if (x == NULL || x->req.easy != easy) {
            continue;
        }

        orbit_http_finish(x, rc);
    }

    while (!ngx_queue_empty(&hc->failed)) {
        q = ngx_queue_head(&hc->failed);
        x = ngx_queue_data(q, orbit_http_xfer_t, queue);

        orbit_http_finish(x, CURLE_OK);
    }
}


static void
orbit_http_finish(orbit_http_xfer_t *x, CURLcode rc)
{
    long               code;
    size_t             len;
    u_char            *p, *last;
    ngx_log_t         *log;
    orbit_http_req_t  *req;

    req = &x->req;
    log = req->pool->log;

    code = 0;
    (void) curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &code);
    req->result = (int) rc;

    if (x->fail.len) {
        req->error = x->fail;

    } else if (x->refused) {
        ngx_str_set(&req->error, "the address is not a public one");
        req->refused = 1;

    } else if (x->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        ngx_str_set(&req->error, "response too large");
        req->too_large = 1;

    } else if (rc != CURLE_OK) {
        len = ngx_strlen(curl_easy_strerror(rc)) + 2
              + ngx_strnlen((u_char *) x->errbuf, CURL_ERROR_SIZE);

        p = ngx_pnalloc(req->pool, len);

        if (p == NULL) {
            ngx_str_set(&req->error, "out of memory");

        } else {
            last = ngx_cpymem(p, curl_easy_strerror(rc),
                              ngx_strlen(curl_easy_strerror(rc)));

            if (x->errbuf[0]) {
                last = ngx_sprintf(last, ": %s", x->errbuf);
            }

            req->error.data = p;
            req->error.len = last - p;
        }

        req->timedout = (rc == CURLE_OPERATION_TIMEDOUT);

    } else {
        req->status = (ngx_uint_t) code;
    }

    if (req->error.len) {
        /* a cut short response is no response */
        req->status = 0;
    }

    ngx_log_debug5(NGX_LOG_DEBUG_EVENT, log, 0,
                   "orbit http: %V done, status:%ui, bytes:%uz, "
                   "timedout:%d, error:\"%V\"",
                   &req->url, req->status, req->response.len,
                   req->timedout, &req->error);

    orbit_http_release(x);

    /* req may be freed by its handler */

    req->handler(req);
}


static size_t
orbit_http_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    orbit_http_xfer_t *x = userdata;

    u_char            *p;
    size_t             n, need, cap;
    curl_off_t         cl;
    orbit_http_req_t  *req;

    req = &x->req;
    n = size * nmemb;

    if (n == 0) {
        return 0;
    }

    need = req->response.len + n;

    if (need > x->max || need < n) {
        x->too_large = 1;
        return 0;
    }

    if (need > x->capacity) {
        cap = x->capacity ? x->capacity * 2 : ORBIT_HTTP_BUF_MIN;

        if (x->capacity == 0
            && curl_easy_getinfo(req->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T,
                                 &cl)
               == CURLE_OK
            && cl > 0 && (size_t) cl <= x->max)
        {
            cap = (size_t) cl;
        }

        while (cap < need) {
            cap *= 2;
        }

        if (cap > x->max) {
            cap = x->max;
        }

        p = ngx_pnalloc(req->pool, cap);
        if (p == NULL) {
            return 0;
        }

        if (req->response.len) {
            ngx_memcpy(p, req->response.data, req->response.len);
        }

        if (req->response.data) {
            /* frees large allocations only; small ones go with the pool */
            (void) ngx_pfree(req->pool, req->response.data);
        }

        req->response.data = p;
        x->capacity = cap;
    }

    ngx_memcpy(req->response.data + req->response.len, ptr, n);
    req->response.len += n;

    return n;
}


/* One header line per call, with its CRLF; "HTTP/" lines start a block. */

static size_t
orbit_http_header_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    orbit_http_xfer_t *x = userdata;

    u_char            *line, *end, *colon, *v;
    size_t             n;
    ngx_table_elt_t   *h;
    orbit_http_req_t  *req;

    req = &x->req;
    n = size * nmemb;

    line = (u_char *) ptr;
    end = line + n;

    while (end > line && (end[-1] == CR || end[-1] == LF)) {
        end--;
    }

    if (end == line) {
        return n;
    }

    if (x->mail) {
        /* a mail server's reply line, not a header */
        return orbit_http_reply_line(x, line, end - line) ? n : 0;
    }

    if (end - line > 5 && ngx_strncmp(line, "HTTP/", 5) == 0) {
        /* interim (100) or proxy responses: keep the last block only */
        req->response_headers->nelts = 0;
        return n;
    }

    if (*line == ' ' || *line == '\t') {
        /* obsolete line folding: drop it */
        return n;
    }

    colon = ngx_strlchr(line, end, ':');
    if (colon == NULL || colon == line) {
        return n;
    }

    h = ngx_array_push(req->response_headers);
    if (h == NULL) {
        return 0;
    }

    h->hash = 1;
    h->key.len = colon - line;

    v = colon + 1;
    while (v < end && (*v == ' ' || *v == '\t')) {
        v++;
    }

    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }

    h->value.len = end - v;

    h->key.data = ngx_pnalloc(req->pool,
                              2 * h->key.len + h->value.len + 1);
    if (h->key.data == NULL) {
        return 0;
    }

    ngx_memcpy(h->key.data, line, h->key.len);

    h->lowcase_key = h->key.data + h->key.len;
    ngx_strlow(h->lowcase_key, h->key.data, h->key.len);

    h->value.data = h->lowcase_key + h->key.len;
    *ngx_cpymem(h->value.data, v, h->value.len) = '\0';

    return n;
}


/* SMTP's DATA: the message from req->body */

static size_t
orbit_http_read_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    orbit_http_xfer_t *x = userdata;

    size_t  n;

    n = x->req.body.len - x->uploaded;

    if (n > size * nmemb) {
        n = size * nmemb;
    }

    if (n) {
        ngx_memcpy(ptr, x->req.body.data + x->uploaded, n);
        x->uploaded += n;
    }

    return n;
}


/*
 * Appends "line\r\n" to req->reply; past ORBIT_HTTP_REPLY_MAX the lines
 * are dropped (a long CAPABILITY or SEARCH answer is not an error).
 * Returns 0 when out of memory.
 */

static size_t
orbit_http_reply_line(orbit_http_xfer_t *x, u_char *line, size_t n)
{
    u_char            *p;
    size_t             need, cap;
    orbit_http_req_t  *req;

    req = &x->req;
    need = req->reply.len + n + 2;

    if (need > ORBIT_HTTP_REPLY_MAX) {
        return 1;
    }

    if (need > x->reply_cap) {
        cap = x->reply_cap ? x->reply_cap * 2 : 1024;

        while (cap < need) {
            cap *= 2;
        }

        p = ngx_pnalloc(req->pool, cap);
        if (p == NULL) {
            return 0;
        }

        if (req->reply.len) {
            ngx_memcpy(p, req->reply.data, req->reply.len);
        }

        req->reply.data = p;
        x->reply_cap = cap;
    }

    p = ngx_cpymem(req->reply.data + req->reply.len, line, n);
    *p++ = CR;
    *p = LF;
    req->reply.len = need;

    return 1;
}


/*
 * A socket for a public address only (req->public_only), or for one its
 * allow list names; else none, and the transfer ends refused.
 */

static curl_socket_t
orbit_http_open_cb(void *clientp, curlsocktype purpose,
    struct curl_sockaddr *address)
{
    orbit_http_xfer_t  *x = clientp;

    if (purpose != CURLSOCKTYPE_IPCXN) {
        return CURL_SOCKET_BAD;
    }

    if (!orbit_http_public(&address->addr)
        && (x->req.allow == NULL
            || ngx_cidr_match(&address->addr, x->req.allow) != NGX_OK))
    {
        x->refused = 1;
        return CURL_SOCKET_BAD;
    }

    return socket(address->family, address->socktype, address->protocol);
}


/* not loopback, private, shared, link-local, multicast, unspecified */

static ngx_uint_t
orbit_http_public(struct sockaddr *sa)
{
    u_char               *b;
    uint32_t              a;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    switch (sa->sa_family) {

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        b = sin6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
            a = ((uint32_t) b[12] << 24) | (b[13] << 16) | (b[14] << 8)
                | b[15];
            break;
        }

        return !(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)
                 || IN6_IS_ADDR_UNSPECIFIED(&sin6->sin6_addr)
                 || IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)
                 || IN6_IS_ADDR_MULTICAST(&sin6->sin6_addr)
                 || (b[0] & 0xfe) == 0xfc);              /* fc00::/7 */
#endif

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        a = ntohl(sin->sin_addr.s_addr);
        break;

    default:
        return 0;
    }

    return !((a >> 24) == 0                              /* 0/8 */
             || (a >> 24) == 10                          /* 10/8 */
             || (a >> 24) == 127                         /* 127/8 */
             || (a & 0xffc00000) == 0x64400000           /* 100.64/10 */
             || (a & 0xffff0000) == 0xa9fe0000           /* 169.254/16 */
             || (a & 0xfff00000) == 0xac100000           /* 172.16/12 */
             || (a & 0xffff0000) == 0xc0a80000           /* 192.168/16 */
             || (a >> 28) >= 0xe);                       /* 224/3 */
}
