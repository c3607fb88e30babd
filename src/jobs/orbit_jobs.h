/*
 * OrbitDesk: the durable job queue (ARCHITECTURE.md, "background work").
 *
 * A job is a row of the jobs table (migrations 006 and 007).  Anyone
 * enqueues one with an INSERT, in the transaction of the work it belongs
 * to; the insert wakes every worker (NOTIFY orbit_jobs, payload the kind).
 * Every nginx worker claims up to orbit_jobs_concurrency jobs of the kinds
 * it has a handler for (FOR UPDATE SKIP LOCKED), runs each handler, and
 * records the outcome the handler gives orbit_job_finish().  Kinds without
 * a handler wait in the table untouched.
 *
 * The outcome and the handler's own effect on the database (an optional
 * statement given with it) commit in one statement, guarded by the claim
 * (id, worker, attempt): a worker whose claim was taken over can neither
 * complete the job nor apply its effect.
 *
 * Leases, no heartbeat: a claim holds a job for orbit_jobs_lease (5m).  A
 * handler has 4/5 of it to call orbit_job_finish(); past that its run is
 * cut off (its pool destroyed, which cancels what it started there) and
 * the job retried.  The last fifth is for the outcome's statement, retried
 * while PostgreSQL is away.  So no job runs twice at once while its worker
 * lives, and the job of a worker that died runs again once its lease has
 * passed.  Work longer than that is several jobs.
 *
 * Delivery is at least once: a worker that dies after the handler's side
 * effect (a provider accepted a message) and before its statement commits
 * leaves the job to run again.  job->id is stable across attempts: send it
 * as the provider's idempotency key where there is one.
 */

#ifndef _ORBIT_JOBS_H_INCLUDED_
#define _ORBIT_JOBS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <jansson.h>

#include "io/orbit_pg.h"


typedef struct orbit_jobs_s  orbit_jobs_t;
typedef struct orbit_job_s   orbit_job_t;


/*
 * Starts the work of a job; called once per run, with job->pool fresh.
 * It ends the run with exactly one orbit_job_finish(), now or later from
 * a callback.  NGX_ERROR without a finish: the job is retried.
 */
typedef ngx_int_t (*orbit_job_handler_pt)(orbit_job_t *job);


struct orbit_job_s {
    int64_t                      id;
    ngx_str_t                    id_text;      /* the id as a parameter */
    ngx_str_t                    kind;
    ngx_str_t                    tenant_id;    /* empty: none */
    ngx_str_t                    payload;      /* JSON text */
    json_t                      *json;         /* the payload, parsed */
    ngx_uint_t                   attempt;      /* 1 on the first run */
    ngx_uint_t                   max_attempts;
    ngx_pool_t                  *pool;         /* lives as long as the run */
    ngx_log_t                   *log;          /* names the job */
    void                        *data;         /* the registration's */
};


typedef enum {
    ORBIT_JOB_DONE = 0,
    ORBIT_JOB_RETRY,           /* again after a backoff, or delay; failed
                                  after the last attempt */
    ORBIT_JOB_FAIL,            /* failed for good */
    ORBIT_JOB_REPEAT           /* done for now, again after delay with
                                  its attempts reset (periodic work) */
} orbit_job_status_e;


/*
 * effect: one SQL statement, INSERT, UPDATE or DELETE (or a SELECT of a
 * function), run in the statement that records the outcome, as a CTE: its
 * parameters are $1..$nparams, and it may read the relation "job" (id,
 * tenant_id, status, attempts: the row as the outcome leaves it, so
 * status is 'failed' when a RETRY was the last attempt).  When the claim
 * was lost the whole statement rolls back.  A constant text: it is
 * prepared once per connection.  error and values must live until the end
 * of the run (job->pool does).
 */
typedef struct {
    orbit_job_status_e           status;
    ngx_str_t                    error;        /* RETRY, FAIL: last_error */
    ngx_msec_t                   delay;        /* RETRY: 0 for the backoff,
                                                  else not before (e.g. a
                                                  Retry-After); REPEAT */
    const char                  *effect;
    int                          nparams;
    const char                 **values;
} orbit_job_outcome_t;


/* the queue's configuration: the orbit_jobs* directives, the handlers */
typedef struct {
    ngx_flag_t                   enable;
    ngx_uint_t                   concurrency;  /* runs per worker */
    ngx_msec_t                   lease;
    ngx_msec_t                   poll;
    ngx_msec_t                   backoff;      /* the first retry's delay */
    ngx_msec_t                   backoff_max;
    time_t                       keep;         /* done jobs, seconds */
    ngx_array_t                 *handlers;     /* orbit_jobs_handler_t */
} orbit_jobs_conf_t;


/* configuration time (the master) */
void orbit_jobs_conf_create(orbit_jobs_conf_t *jc);
char *orbit_jobs_conf_init(ngx_conf_t *cf, orbit_jobs_conf_t *jc,
    ngx_uint_t postgres);
ngx_int_t orbit_jobs_register(ngx_conf_t *cf, orbit_jobs_conf_t *jc,
    const char *kind, orbit_job_handler_pt handler, void *data);
char *orbit_jobs_backoff_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* per worker: NULL on error; nothing to do when the queue is off */
orbit_jobs_t *orbit_jobs_create(ngx_cycle_t *cycle, orbit_jobs_conf_t *jc,
    orbit_pg_pool_t *pg);
void orbit_jobs_destroy(orbit_jobs_t *jobs);

/* jobs of a kind were committed by their inserter, without NOTIFY (016):
 * claims them when the kind is ours; NGX_DECLINED: not ours; NGX_ABORT:
 * this worker claims nothing (then orbit_jobs_notify tells the others) */
ngx_int_t orbit_jobs_wake(orbit_jobs_t *jobs, u_char *kind, size_t len);
ngx_int_t orbit_jobs_notify(orbit_pg_pool_t *pg, const char *kind,
    ngx_log_t *log);

/* ends a run: exactly once per handler call; out is copied */
void orbit_job_finish(orbit_job_t *job, orbit_job_outcome_t *out);


#endif /* _ORBIT_JOBS_H_INCLUDED_ */
