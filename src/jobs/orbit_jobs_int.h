/*
 * OrbitDesk: the job queue's insides, shared by orbit_jobs.c (claiming,
 * waking, shutdown) and orbit_jobs_run.c (one job's run and its outcome).
 * Not for use outside src/jobs.
 */

#ifndef _ORBIT_JOBS_INT_H_INCLUDED_
#define _ORBIT_JOBS_INT_H_INCLUDED_


#include "jobs/orbit_jobs.h"


typedef struct {
    ngx_str_t                    kind;
    orbit_job_handler_pt         handler;
    void                        *data;
} orbit_jobs_handler_t;


struct orbit_jobs_s {
    orbit_jobs_conf_t           *conf;
    orbit_pg_pool_t             *pg;
    ngx_log_t                   *log;
    ngx_connection_t             ident;        /* ev->data of our events */
    ngx_connection_t            *watch;        /* idle: hears of shutdown */
    ngx_event_t                  timer;        /* poll, or the next due */
    ngx_event_t                  wake;         /* posted: one claim for a
                                                  burst of notifications */
    ngx_queue_t                  runs;         /* orbit_jobs_run_t */
    ngx_uint_t                   nruns;
    ngx_str_t                    kinds;        /* '{"a","b"}': $1 */
    ngx_str_t                    worker;       /* locked_by */
    ngx_pool_t                  *claim;        /* the claim in flight */
    ngx_msec_t                   claim_sent;   /* leases end after this */
    ngx_pool_t                  *seed;         /* the maintenance insert */
    ngx_uint_t                   asked;
    ngx_uint_t                   notified;     /* counted for the log at */
    ngx_uint_t                   claims;       /* exit */
    ngx_uint_t                   runs_started;
    unsigned                     again:1;      /* claim once more */
    unsigned                     backlog:1;    /* the last claim was full */
    unsigned                     seeded:1;
    unsigned                     stopping:1;
};


/* a job from its claim to the commit of its outcome */
typedef struct {
    orbit_job_t                  job;          /* first: the handler's */
    orbit_jobs_t                *jobs;
    ngx_pool_t                  *pool;         /* this, and the outcome's
                                                  statement */
    ngx_log_t                    log;
    ngx_event_t                  timer;        /* cut-off, then retries of
                                                  the outcome */
    ngx_queue_t                  queue;        /* in jobs->runs */
    ngx_msec_t                   lease_end;    /* ngx_current_msec */
    ngx_str_t                    attempt;      /* the claim's, as text */
    orbit_job_outcome_t          out;
    orbit_pg_query_t            *query;        /* the outcome's */
    unsigned                     finishing:1;  /* out is set */
    unsigned                     resent:1;
    unsigned                     abandoned:1;  /* ends at its timer */
} orbit_jobs_run_t;


/* orbit_jobs_run.c */
ngx_int_t orbit_jobs_run_start(orbit_jobs_t *jobs,
    orbit_jobs_handler_t *h, PGresult *res, int row);
void orbit_jobs_run_cut(orbit_jobs_run_t *run, const char *why);
void orbit_jobs_run_free(orbit_jobs_run_t *run);

/* orbit_jobs.c */
orbit_jobs_handler_t *orbit_jobs_handler(orbit_jobs_t *jobs, u_char *kind,
    size_t len);
void orbit_jobs_run_ended(orbit_jobs_t *jobs);
void orbit_jobs_timer(orbit_jobs_t *jobs, ngx_msec_t after,
    ngx_uint_t earlier);


#endif /* _ORBIT_JOBS_INT_H_INCLUDED_ */
