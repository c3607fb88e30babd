/*
 * OrbitDesk: the http module's shared configuration and the per-worker
 * io drivers every handler reaches through it.
 */

#ifndef _NGX_HTTP_ORBIT_MODULE_H_INCLUDED_
#define _NGX_HTTP_ORBIT_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "core/orbit_core.h"
#include "io/orbit_pg.h"
#include "io/orbit_redis.h"
#include "io/orbit_http_client.h"
#include "io/orbit_storage.h"
#include "api/orbit_limit.h"
#include "jobs/orbit_jobs.h"


#define ORBIT_VERSION  "0.1.0"


typedef struct {
    orbit_pg_conf_t             *pg;           /* orbit_postgres */
    orbit_redis_conf_t          *redis;        /* orbit_redis */
    ngx_str_t                    migrations;   /* orbit_migrations dir */
    ngx_flag_t                   migrate;      /* orbit_migrate on|off */
    orbit_secrets_t             *secrets;      /* orbit_secrets file */
    ngx_thread_pool_t           *thread_pool;  /* CPU work: passwords */
    ngx_shm_zone_t              *apikey_zone;  /* orbit_apikey_zone */
    orbit_jobs_conf_t            jobs;         /* orbit_jobs* */
    orbit_storage_t             *storage;      /* orbit_media */
    size_t                       media_max_size;
    ngx_array_t                 *media_fetch_allow;  /* of ngx_cidr_t */

    /* per worker, created in init_process */
    orbit_pg_pool_t             *pg_pool;
    orbit_redis_t               *redis_conn;
    orbit_http_client_t         *http_client;
    orbit_jobs_t                *job_queue;
} ngx_http_orbit_main_conf_t;


typedef struct {
    ngx_flag_t                   api;          /* orbit_api */
    orbit_limit_conf_t           limit;        /* orbit_limit */
} ngx_http_orbit_loc_conf_t;


extern ngx_module_t  ngx_http_orbit_module;


/* The worker's drivers; NULL when not configured (or in the master). */
orbit_pg_pool_t *ngx_http_orbit_pg(void);
orbit_redis_t *ngx_http_orbit_redis(void);
orbit_http_client_t *ngx_http_orbit_http_client(void);
orbit_secrets_t *ngx_http_orbit_secrets(void);
ngx_thread_pool_t *ngx_http_orbit_thread_pool(void);
orbit_storage_t *ngx_http_orbit_storage(void);
ngx_shm_zone_t *ngx_http_orbit_apikey_zone(void);

/* A job kind's handler, from any module's configuration (postconfiguration
 * at the latest). */
ngx_int_t ngx_http_orbit_jobs_register(ngx_conf_t *cf, const char *kind,
    orbit_job_handler_pt handler, void *data);

/* Jobs of a kind committed without NOTIFY: woken here, or the others told. */
void ngx_http_orbit_jobs_wake(const char *kind);


#endif /* _NGX_HTTP_ORBIT_MODULE_H_INCLUDED_ */
