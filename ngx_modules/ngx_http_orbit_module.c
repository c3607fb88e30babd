/*
 * OrbitDesk: the http module.  Directives, worker start and exit of the io
 * drivers, migrations at start, and the "orbit_api" content handler.
 *
 *   orbit_postgres  "conninfo" [pool=N] [queue=N] [timeout=T]
 *                   [connect_timeout=T];
 *   orbit_redis     ADDRESS:PORT [timeout=T];
 *   orbit_migrations DIR;
 *   orbit_migrate   on | off;
 *   orbit_secrets   FILE;
 *   orbit_limit_zone NAME SIZE [rate=Nr/m];
 *   orbit_limit     NAME [rate=Nr/m] | off;
 *   orbit_apikey_zone NAME SIZE;
 *   orbit_jobs      on | off;
 *   orbit_jobs_concurrency N;
 *   orbit_jobs_lease TIME;
 *   orbit_jobs_poll TIME;
 *   orbit_jobs_backoff TIME [max=TIME];
 *   orbit_jobs_keep TIME;
 *   orbit_api;
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <ngx_thread_pool.h>

#include "ngx_http_orbit_module.h"
#include "api/orbit_api.h"
#include "api/orbit_apikey_cache.h"
#include "store/orbit_migrate.h"


static ngx_int_t ngx_http_orbit_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_orbit_migrate(ngx_conf_t *cf,
    ngx_http_orbit_main_conf_t *omcf);
static void ngx_http_orbit_migrate_log(void *data, const char *msg);
static ngx_int_t ngx_http_orbit_init_process(ngx_cycle_t *cycle);
static void ngx_http_orbit_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_orbit_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_orbit_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_orbit_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_orbit_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_orbit_resolve_host(ngx_conf_t *cf,
    orbit_pg_conf_t *pg);
static ngx_int_t ngx_http_orbit_numeric_hosts(const char *hosts);
static char *ngx_http_orbit_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_orbit_secrets_conf(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_orbit_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_orbit_media(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_orbit_media_fetch_allow(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_http_orbit_commands[] = {

    { ngx_string("orbit_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_orbit_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      ngx_http_orbit_redis_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_migrations"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, migrations),
      NULL },

    { ngx_string("orbit_migrate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, migrate),
      NULL },

    { ngx_string("orbit_secrets"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_orbit_secrets_conf,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_media"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_orbit_media,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_media_fetch_allow"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_orbit_media_fetch_allow,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("orbit_media_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, media_max_size),
      NULL },

    { ngx_string("orbit_limit_zone"),
      ORBIT_LIMIT_ZONE_DIRECTIVE_TYPE,
      orbit_limit_zone_directive,
      0,
      0,
      NULL },

    { ngx_string("orbit_limit"),
      ORBIT_LIMIT_DIRECTIVE_TYPE,
      orbit_limit_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_orbit_loc_conf_t, limit),
      NULL },

    { ngx_string("orbit_apikey_zone"),
      ORBIT_APIKEY_ZONE_DIRECTIVE_TYPE,
      orbit_apikey_zone_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, apikey_zone),
      NULL },

    { ngx_string("orbit_jobs"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, jobs.enable),
      NULL },

    { ngx_string("orbit_jobs_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, jobs.concurrency),
      NULL },

    { ngx_string("orbit_jobs_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, jobs.lease),
      NULL },

    { ngx_string("orbit_jobs_poll"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, jobs.poll),
      NULL },

    { ngx_string("orbit_jobs_backoff"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE12,
      orbit_jobs_backoff_directive,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, jobs),
      NULL },

    { ngx_string("orbit_jobs_keep"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_orbit_main_conf_t, jobs.keep),
      NULL },

    { ngx_string("orbit_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_orbit_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_orbit_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_orbit_postconfiguration,      /* postconfiguration */

    ngx_http_orbit_create_main_conf,       /* create main configuration */
    ngx_http_orbit_init_main_conf,         /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_orbit_create_loc_conf,        /* create location configuration */
    ngx_http_orbit_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_module_ctx,            /* module context */
    ngx_http_orbit_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_orbit_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_orbit_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the running cycle's configuration: NULL without an http block */

static ngx_http_orbit_main_conf_t *
ngx_http_orbit_conf(void)
{
    return ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_orbit_module);
}


orbit_pg_pool_t *
ngx_http_orbit_pg(void)
{
    return ngx_http_orbit_conf() ? ngx_http_orbit_conf()->pg_pool : NULL;
}


/*
 * Jobs of a kind committed without NOTIFY (the pipeline's, 016): this
 * worker claims them, or, when it claims nothing (no queue, or stopping),
 * the other workers and nodes are told by a NOTIFY of its own.
 */

void
ngx_http_orbit_jobs_wake(const char *kind)
{
    ngx_http_orbit_main_conf_t  *omcf;

    omcf = ngx_http_orbit_conf();
    if (omcf == NULL) {
        return;
    }

    if (orbit_jobs_wake(omcf->job_queue, (u_char *) kind, ngx_strlen(kind))
        == NGX_ABORT)
    {
        (void) orbit_jobs_notify(omcf->pg_pool, kind, ngx_cycle->log);
    }
}


orbit_redis_t *
ngx_http_orbit_redis(void)
{
    return ngx_http_orbit_conf() ? ngx_http_orbit_conf()->redis_conn : NULL;
}


orbit_http_client_t *
ngx_http_orbit_http_client(void)
{
    return ngx_http_orbit_conf() ? ngx_http_orbit_conf()->http_client : NULL;
}


orbit_secrets_t *
ngx_http_orbit_secrets(void)
{
    return ngx_http_orbit_conf() ? ngx_http_orbit_conf()->secrets : NULL;
}


orbit_storage_t *
ngx_http_orbit_storage(void)
{
    return ngx_http_orbit_conf() ? ngx_http_orbit_conf()->storage : NULL;
}


ngx_thread_pool_t *
ngx_http_orbit_thread_pool(void)
{
    return ngx_http_orbit_conf() ? ngx_http_orbit_conf()->thread_pool
                                 : NULL;
}


ngx_shm_zone_t *
ngx_http_orbit_apikey_zone(void)
{
    return ngx_http_orbit_conf() ? ngx_http_orbit_conf()->apikey_zone
                                 : NULL;
}


ngx_int_t
ngx_http_orbit_jobs_register(ngx_conf_t *cf, const char *kind,
    orbit_job_handler_pt handler, void *data)
{
    ngx_http_orbit_main_conf_t  *omcf;

    omcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_orbit_module);

    return orbit_jobs_register(cf, &omcf->jobs, kind, handler, data);
}


static ngx_int_t
ngx_http_orbit_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_orbit_main_conf_t  *omcf;

    omcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_orbit_module);

    if (omcf->migrate == 1 && !ngx_test_config) {
        if (ngx_http_orbit_migrate(cf, omcf) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Runs in the master while it reads the configuration: the one place a
 * blocking call is allowed.  A failure here rejects the configuration
 * (on reload the old one keeps serving).
 */

static ngx_int_t
ngx_http_orbit_migrate(ngx_conf_t *cf, ngx_http_orbit_main_conf_t *omcf)
{
    char  err[512];

    if (omcf->pg == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"orbit_migrate\" needs \"orbit_postgres\"");
        return NGX_ERROR;
    }

    if (omcf->migrations.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"orbit_migrate\" needs \"orbit_migrations\"");
        return NGX_ERROR;
    }

    if (orbit_migrate((char *) omcf->pg->conninfo.data,
                      (char *) omcf->pg->hostaddr.data,
                      (char *) omcf->migrations.data,
                      ngx_http_orbit_migrate_log, cf->log,
                      err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "migrations failed: %s",
                           err);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_orbit_migrate_log(void *data, const char *msg)
{
    ngx_log_t  *log = data;

    ngx_log_error(NGX_LOG_NOTICE, log, 0, "orbit: %s", msg);
}


static ngx_int_t
ngx_http_orbit_init_process(ngx_cycle_t *cycle)
{
    ngx_http_orbit_main_conf_t  *omcf;

    omcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_orbit_module);

    if (omcf == NULL) {
        return NGX_OK;
    }

    if (omcf->pg) {
        omcf->pg_pool = orbit_pg_pool_create(cycle, omcf->pg);
        if (omcf->pg_pool == NULL) {
            return NGX_ERROR;
        }
    }

    if (omcf->redis) {
        omcf->redis_conn = orbit_redis_create(cycle, omcf->redis);
        if (omcf->redis_conn == NULL) {
            return NGX_ERROR;
        }
    }

    omcf->http_client = orbit_http_client_create(cycle);
    if (omcf->http_client == NULL) {
        return NGX_ERROR;
    }

    if (omcf->jobs.enable) {
        omcf->job_queue = orbit_jobs_create(cycle, &omcf->jobs,
                                            omcf->pg_pool);
        if (omcf->job_queue == NULL) {
            return NGX_ERROR;
        }
    }

    /* revoked API keys leave this worker's cache when Redis says so */

    if (orbit_apikey_init_process(cycle, omcf->apikey_zone,
                                  omcf->redis_conn)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_orbit_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_orbit_main_conf_t  *omcf;

    omcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_orbit_module);

    if (omcf == NULL) {
        return;
    }

    /* first: the runs' work is on the drivers below */

    if (omcf->job_queue) {
        orbit_jobs_destroy(omcf->job_queue);
        omcf->job_queue = NULL;
    }

    if (omcf->http_client) {
        orbit_http_client_destroy(omcf->http_client);
        omcf->http_client = NULL;
    }

    if (omcf->redis_conn) {
        orbit_redis_destroy(omcf->redis_conn);
        omcf->redis_conn = NULL;
    }

    if (omcf->pg_pool) {
        orbit_pg_pool_destroy(omcf->pg_pool);
        omcf->pg_pool = NULL;
    }
}


static void *
ngx_http_orbit_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_orbit_main_conf_t  *omcf;

    omcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_orbit_main_conf_t));
    if (omcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     omcf->pg = NULL;
     *     omcf->redis = NULL;
     *     omcf->migrations = { 0, NULL };
     *     omcf->apikey_zone = NULL;
     */

    omcf->migrate = NGX_CONF_UNSET;
    omcf->media_max_size = NGX_CONF_UNSET_SIZE;
    orbit_jobs_conf_create(&omcf->jobs);

    return omcf;
}


static char *
ngx_http_orbit_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_orbit_main_conf_t  *omcf = conf;

    ngx_conf_init_value(omcf->migrate, 0);
    ngx_conf_init_size_value(omcf->media_max_size, 16 * 1024 * 1024);

    if (omcf->storage) {
        omcf->storage->max_size = omcf->media_max_size;
        omcf->storage->fetch_allow = omcf->media_fetch_allow;
        omcf->storage->secrets = omcf->secrets;

        if (omcf->storage->type == ORBIT_STORAGE_S3
            && (omcf->secrets == NULL
                || omcf->secrets->s3_access_key_id[0] == '\0'
                || omcf->secrets->s3_secret_access_key[0] == '\0'))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"orbit_media s3\" needs S3_ACCESS_KEY_ID "
                               "and S3_SECRET_ACCESS_KEY in the file of "
                               "\"orbit_secrets\"");
            return NGX_CONF_ERROR;
        }
    }

    if (orbit_jobs_conf_init(cf, &omcf->jobs, omcf->pg != NULL)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (omcf->migrations.len) {
        if (ngx_conf_full_name(cf->cycle, &omcf->migrations, 1) != NGX_OK) {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_orbit_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_orbit_loc_conf_t  *olcf;

    olcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_orbit_loc_conf_t));
    if (olcf == NULL) {
        return NULL;
    }

    olcf->api = NGX_CONF_UNSET;

    return olcf;
}


static char *
ngx_http_orbit_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_orbit_loc_conf_t *prev = parent;
    ngx_http_orbit_loc_conf_t *conf = child;

    ngx_conf_merge_value(conf->api, prev->api, 0);
    orbit_limit_merge_conf(&prev->limit, &conf->limit);

    return NGX_CONF_OK;
}


static char *
ngx_http_orbit_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_main_conf_t *omcf = conf;

    ngx_int_t         n;
    ngx_str_t        *value, s;
    ngx_uint_t        i;
    orbit_pg_conf_t  *pg;

    if (omcf->pg) {
        return "is duplicate";
    }

    pg = ngx_pcalloc(cf->pool, sizeof(orbit_pg_conf_t));
    if (pg == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    /* ngx_conf values are nul-terminated */
    pg->conninfo = value[1];
    pg->size = 8;
    pg->queue = 4096;
    pg->timeout = 10000;
    pg->connect_timeout = 3000;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "pool=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (n <= 0 || n > 1024) {
                goto invalid;
            }

            pg->size = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "queue=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n < 0) {
                goto invalid;
            }

            pg->queue = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "timeout=", 8) == 0) {
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

            pg->timeout = ngx_parse_time(&s, 0);
            if (pg->timeout == (ngx_msec_t) NGX_ERROR || pg->timeout == 0) {
                goto invalid;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "connect_timeout=", 16) == 0) {
            s.data = value[i].data + 16;
            s.len = value[i].len - 16;

            pg->connect_timeout = ngx_parse_time(&s, 0);
            if (pg->connect_timeout == (ngx_msec_t) NGX_ERROR
                || pg->connect_timeout == 0)
            {
                goto invalid;
            }

            continue;
        }

        goto invalid;
    }

    omcf->pg = pg;

    return ngx_http_orbit_resolve_host(cf, pg);

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\"", &value[i]);

    return NGX_CONF_ERROR;
}


/*
 * libpq looks host names up with a blocking getaddrinfo() on every
 * connect.  Look the name up once here, at configuration time, and hand
 * libpq the address as "hostaddr" (the name stays for TLS checks).
 */

static char *
ngx_http_orbit_resolve_host(ngx_conf_t *cf, orbit_pg_conf_t *pg)
{
    char                    *err;
    ngx_int_t                rc;
    ngx_url_t                u;
    PQconninfoOption        *opts, *o;
    const char              *host, *hostaddr;
    u_char                   text[NGX_SOCKADDR_STRLEN + 1];

    opts = PQconninfoParse((char *) pg->conninfo.data, &err);

    if (opts == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid conninfo: %s",
                           err ? err : "out of memory");
        if (err) {
            PQfreemem(err);
        }
        return NGX_CONF_ERROR;
    }

    host = NULL;
    hostaddr = NULL;

    for (o = opts; o->keyword; o++) {
        if (o->val && o->val[0]) {
            if (ngx_strcmp(o->keyword, "host") == 0) {
                host = o->val;

            } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
                hostaddr = o->val;
            }
        }
    }

    if (host == NULL || hostaddr || host[0] == '/' || host[0] == '@') {
        /* a socket path, or the address given: as is */
        PQconninfoFree(opts);
        return NGX_CONF_OK;
    }

    if (ngx_strchr(host, ',')) {
        /* several hosts (failover): each must be an address already */
        rc = ngx_http_orbit_numeric_hosts(host);
        PQconninfoFree(opts);

        if (rc != NGX_OK) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "several postgres hosts must be given as "
                               "addresses (libpq would resolve the names "
                               "blocking)");
            return NGX_CONF_ERROR;
        }

        return NGX_CONF_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url.data = (u_char *) host;
    u.url.len = ngx_strlen(host);
    u.default_port = 5432;
    u.no_port = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "cannot resolve postgres host \"%s\"%s%s", host,
                           u.err ? ": " : "", u.err ? u.err : "");
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    PQconninfoFree(opts);

    pg->hostaddr.len = ngx_sock_ntop(u.addrs[0].sockaddr,
                                     u.addrs[0].socklen, text,
                                     NGX_SOCKADDR_STRLEN, 0);
    text[pg->hostaddr.len] = '\0';

    pg->hostaddr.data = ngx_pnalloc(cf->pool, pg->hostaddr.len + 1);
    if (pg->hostaddr.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(pg->hostaddr.data, text, pg->hostaddr.len + 1);

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_orbit_numeric_hosts(const char *hosts)
{
    u_char           addr[sizeof(struct in6_addr)];
    size_t           len;
    const char      *end;
    char             one[NGX_SOCKADDR_STRLEN];

    for ( ;; ) {
        end = ngx_strchr(hosts, ',');
        len = end ? (size_t) (end - hosts) : ngx_strlen(hosts);

        if (len == 0 || len >= sizeof(one)) {
            return NGX_ERROR;
        }

        ngx_memcpy(one, hosts, len);
        one[len] = '\0';

        if (one[0] != '/'
            && inet_pton(AF_INET, one, addr) != 1
            && inet_pton(AF_INET6, one, addr) != 1)
        {
            return NGX_ERROR;
        }

        if (end == NULL) {
            return NGX_OK;
        }

        hosts = end + 1;
    }
}


static char *
ngx_http_orbit_redis_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_main_conf_t *omcf = conf;

    ngx_str_t           *value, s;
    ngx_url_t            u;
    orbit_redis_conf_t  *rc;
    u_char               text[NGX_SOCKADDR_STRLEN + 1];

    if (omcf->redis) {
        return "is duplicate";
    }

    rc = ngx_pcalloc(cf->pool, sizeof(orbit_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    rc->timeout = 1000;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "timeout=", 8) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + 8;
        s.len = value[2].len - 8;

        rc->timeout = ngx_parse_time(&s, 0);
        if (rc->timeout == (ngx_msec_t) NGX_ERROR || rc->timeout == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    /* hiredis resolves names blocking: resolve here, connect by address */

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.url = value[1];
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid redis address \"%V\"%s%s", &value[1],
                           u.err ? ": " : "", u.err ? u.err : "");
        return NGX_CONF_ERROR;
    }

    if (u.addrs[0].sockaddr->sa_family != AF_INET
        && u.addrs[0].sockaddr->sa_family != AF_INET6)
    {
        return "needs an IPv4 or IPv6 address";
    }

    rc->addr = &u.addrs[0];
    rc->port = u.port;

    rc->host.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                 text, NGX_SOCKADDR_STRLEN, 0);

    rc->host.data = ngx_pnalloc(cf->pool, rc->host.len + 1);
    if (rc->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(rc->host.data, text, rc->host.len);
    rc->host.data[rc->host.len] = '\0';

    omcf->redis = rc;

    return NGX_CONF_OK;
}


/*
 * Read in the master at configuration time, so the file may be readable
 * by root alone (0600) while workers run unprivileged.
 */

static char *
ngx_http_orbit_secrets_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_main_conf_t *omcf = conf;

    char              err[256];
    ssize_t           n;
    ngx_str_t        *value, name;
    ngx_file_t        file;
    ngx_file_info_t   fi;
    u_char            text[8192];

    if (omcf->secrets) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_conf_full_name(cf->cycle, &name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = name;
    file.log = cf->log;

    file.fd = ngx_open_file(name.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", &name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) != NGX_FILE_ERROR
        && (fi.st_mode & (S_IRWXG|S_IRWXO)))
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "secrets file \"%V\" is readable by others: "
                           "chmod 600 it", &name);
    }

    n = ngx_read_file(&file, text, sizeof(text), 0);
    ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    if ((size_t) n == sizeof(text)) {
        return "names a file too large for secrets";
    }

    omcf->secrets = ngx_pcalloc(cf->pool, sizeof(orbit_secrets_t));
    if (omcf->secrets == NULL) {
        return NGX_CONF_ERROR;
    }

    if (orbit_secrets_parse((char *) text, n, omcf->secrets, err,
                            sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "secrets file \"%V\": %s",
                           &name, err);
        return NGX_CONF_ERROR;
    }

    ngx_explicit_memzero(text, sizeof(text));

    return NGX_CONF_OK;
}


static char *
ngx_http_orbit_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_loc_conf_t *olcf = conf;

    ngx_http_core_loc_conf_t    *clcf;
    ngx_http_orbit_main_conf_t  *omcf;

    if (olcf->api != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    olcf->api = 1;

    /* password hashing runs there, off the event loop */

    omcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_orbit_module);

    if (omcf->thread_pool == NULL) {
        omcf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (omcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = orbit_api_handler;

    return NGX_CONF_OK;
}


/*
 * orbit_media local /var/lib/orbitdesk/media;
 * orbit_media s3 https://s3.eu-west-1.amazonaws.com bucket=orbit
 *             [region=eu-west-1];
 */

static char *
ngx_http_orbit_media(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_orbit_main_conf_t *omcf = conf;

    u_char           *p;
    ngx_str_t        *value;
    ngx_uint_t        i;
    ngx_path_t       *path;
    orbit_storage_t  *st;

    if (omcf->storage) {
        return "is duplicate";
    }

    st = ngx_pcalloc(cf->pool, sizeof(orbit_storage_t));
    if (st == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "local") == 0) {
        if (cf->args->nelts != 3) {
            return "takes \"local\" and a folder";
        }

        st->type = ORBIT_STORAGE_LOCAL;
        st->root = value[2];

        if (ngx_conf_full_name(cf->cycle, &st->root, 0) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        while (st->root.len > 1 && st->root.data[st->root.len - 1] == '/') {
            st->root.len--;
        }

        st->root.data[st->root.len] = '\0';

        /* made at start and given to the workers' user, as temp paths */

        path = ngx_pcalloc(cf->pool, sizeof(ngx_path_t));
        if (path == NULL) {
            return NGX_CONF_ERROR;
        }

        path->name = st->root;
        path->conf_file = cf->conf_file->file.name.data;
        path->line = cf->conf_file->line;

        if (ngx_add_path(cf, &path) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

    } else if (ngx_strcmp(value[1].data, "s3") == 0) {
        st->type = ORBIT_STORAGE_S3;
        st->endpoint = value[2];
        ngx_str_set(&st->region, "us-east-1");

        if (ngx_strncmp(st->endpoint.data, "http://", 7) == 0) {
            st->host.data = st->endpoint.data + 7;

        } else if (ngx_strncmp(st->endpoint.data, "https://", 8) == 0) {
            st->host.data = st->endpoint.data + 8;

        } else {
            return "needs an http:// or https:// endpoint for s3";
        }

        while (st->endpoint.len
               && st->endpoint.data[st->endpoint.len - 1] == '/')
        {
            st->endpoint.len--;
        }

        st->endpoint.data[st->endpoint.len] = '\0';
        st->host.len = st->endpoint.data + st->endpoint.len - st->host.data;

        if (st->host.len == 0 || ngx_strlchr(st->host.data,
                                             st->host.data + st->host.len,
                                             '/'))
        {
            return "needs an endpoint without a path: the bucket is named "
                   "apart (bucket=)";
        }

        for (i = 3; i < cf->args->nelts; i++) {
            if (ngx_strncmp(value[i].data, "bucket=", 7) == 0) {
                st->bucket.data = value[i].data + 7;
                st->bucket.len = value[i].len - 7;
                continue;
            }

            if (ngx_strncmp(value[i].data, "region=", 7) == 0) {
                st->region.data = value[i].data + 7;
                st->region.len = value[i].len - 7;
                continue;
            }

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (st->bucket.len == 0 || st->region.len == 0) {
            return "needs bucket= for s3";
        }

        for (p = st->bucket.data; p < st->bucket.data + st->bucket.len; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')
                  || *p == '-' || *p == '.'))
            {
                return "has a bucket name S3 does not take";
            }
        }

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown media storage \"%V\" (local or s3)",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    if (omcf->thread_pool == NULL) {
        omcf->thread_pool = ngx_thread_pool_add(cf, NULL);
        if (omcf->thread_pool == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    st->thread_pool = omcf->thread_pool;
    omcf->storage = st;

    return NGX_CONF_OK;
}


/*
 * orbit_media_fetch_allow 10.0.0.0/8 127.0.0.1;  private addresses a
 * media download may connect to (a provider's API on the LAN, the
 * suites' fakes): every other download goes to public addresses only.
 */

static char *
ngx_http_orbit_media_fetch_allow(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_orbit_main_conf_t *omcf = conf;

    ngx_int_t    rc;
    ngx_str_t   *value;
    ngx_uint_t   i;
    ngx_cidr_t  *cidr;

    if (omcf->media_fetch_allow == NULL) {
        omcf->media_fetch_allow = ngx_array_create(cf->pool, 4,
                                                   sizeof(ngx_cidr_t));
        if (omcf->media_fetch_allow == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        cidr = ngx_array_push(omcf->media_fetch_allow);
        if (cidr == NULL) {
            return NGX_CONF_ERROR;
        }

        rc = ngx_ptocidr(&value[i], cidr);

        if (rc == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid address or network \"%V\"",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        if (rc == NGX_DONE) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "low address bits of %V are meaningless",
                               &value[i]);
        }
    }

    return NGX_CONF_OK;
}
