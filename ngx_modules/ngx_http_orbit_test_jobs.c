/*
 * OrbitDesk test module: a job kind for the queue's suite (t/060-jobs.t).
 *
 * "test.http" POSTs its payload to payload.url with the worker's HTTP
 * client (X-Orbit-Job: id, X-Orbit-Attempt: n; payload.timeout ms, 5 s
 * by default) and ends the job as an outbound send would:
 *
 *   2xx                                 done
 *   5xx, 429, timeout, no connection    retry (429: after Retry-After)
 *   any other status                    failed, "HTTP 400: body"
 *
 * Each outcome inserts a row into test_job_effects (the suite creates it)
 * in the outcome's statement, so the suite sees what committed together:
 * (job_id, attempt, outcome, http_status).  payload.effect = "broken"
 * names a table that does not exist instead.
 *
 * "test.noop" is done at once, without an effect: the queue's own cost,
 * for t/061-jobs-throughput.t.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_orbit_module.h"


#define NGX_HTTP_ORBIT_TEST_JOBS_TIMEOUT  5000


static ngx_int_t ngx_http_orbit_test_jobs_postconfiguration(ngx_conf_t *cf);
static ngx_int_t ngx_http_orbit_test_jobs_http(orbit_job_t *job);
static ngx_int_t ngx_http_orbit_test_jobs_noop(orbit_job_t *job);
static ngx_int_t ngx_http_orbit_test_jobs_header(orbit_http_req_t *req,
    const char *name, ngx_str_t *value);
static void ngx_http_orbit_test_jobs_answered(orbit_http_req_t *req);
static ngx_msec_t ngx_http_orbit_test_jobs_retry_after(
    orbit_http_req_t *req);
static void ngx_http_orbit_test_jobs_finish(orbit_job_t *job,
    orbit_job_status_e status, ngx_uint_t http, ngx_str_t *error,
    ngx_msec_t delay);


static ngx_http_module_t  ngx_http_orbit_test_jobs_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_orbit_test_jobs_postconfiguration, /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_orbit_test_jobs_module = {
    NGX_MODULE_V1,
    &ngx_http_orbit_test_jobs_module_ctx,  /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_orbit_test_jobs_postconfiguration(ngx_conf_t *cf)
{
    if (ngx_http_orbit_jobs_register(cf, "test.http",
                                     ngx_http_orbit_test_jobs_http, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_orbit_jobs_register(cf, "test.noop",
                                        ngx_http_orbit_test_jobs_noop, NULL);
}


static ngx_int_t
ngx_http_orbit_test_jobs_noop(orbit_job_t *job)
{
    orbit_job_outcome_t  out;

    ngx_memzero(&out, sizeof(orbit_job_outcome_t));
    out.status = ORBIT_JOB_DONE;

    orbit_job_finish(job, &out);

    return NGX_OK;
}


static ngx_int_t
ngx_http_orbit_test_jobs_http(orbit_job_t *job)
{
    json_t            *url, *timeout;
    ngx_str_t          value, error;
    orbit_http_req_t  *req;

    url = json_object_get(job->json, "url");

    if (!json_is_string(url)) {
        ngx_str_set(&error, "the payload has no url");
        ngx_http_orbit_test_jobs_finish(job, ORBIT_JOB_FAIL, 0, &error, 0);
        return NGX_OK;
    }

    req = orbit_http_req_create(job->pool);
    if (req == NULL) {
        return NGX_ERROR;
    }

    timeout = json_object_get(job->json, "timeout");

    ngx_str_set(&req->method, "POST");
    req->url.data = (u_char *) json_string_value(url);
    req->url.len = json_string_length(url);
    req->body = job->payload;
    req->timeout = json_is_integer(timeout) ? json_integer_value(timeout)
                                            : NGX_HTTP_ORBIT_TEST_JOBS_TIMEOUT;
    req->handler = ngx_http_orbit_test_jobs_answered;
    req->data = job;

    value.data = ngx_pnalloc(job->pool, NGX_INT_T_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%ui", job->attempt) - value.data;

    if (ngx_http_orbit_test_jobs_header(req, "X-Orbit-Job", &job->id_text)
        != NGX_OK
        || ngx_http_orbit_test_jobs_header(req, "X-Orbit-Attempt", &value)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "application/json");

    if (ngx_http_orbit_test_jobs_header(req, "Content-Type", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (orbit_http_send(ngx_http_orbit_http_client(), req) != NGX_OK) {
        ngx_http_orbit_test_jobs_finish(job, ORBIT_JOB_RETRY, 0,
                                        &req->error, 0);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_orbit_test_jobs_header(orbit_http_req_t *req, const char *name,
    ngx_str_t *value)
{
    ngx_str_t  line;

    line.len = ngx_strlen(name) + 2 + value->len;
    line.data = ngx_pnalloc(req->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(line.data, "%s: %V", name, value);

    return orbit_http_req_header(req, &line);
}


static void
ngx_http_orbit_test_jobs_answered(orbit_http_req_t *req)
{
    ngx_str_t     error;
    ngx_uint_t    status;
    orbit_job_t  *job;

    job = req->data;
    status = req->status;

    if (status >= 200 && status < 300) {
        ngx_http_orbit_test_jobs_finish(job, ORBIT_JOB_DONE, status, NULL,
                                        0);
        return;
    }

    if (status == 0) {
        ngx_http_orbit_test_jobs_finish(job, ORBIT_JOB_RETRY, 0,
                                        &req->error, 0);
        return;
    }

    error.data = ngx_pnalloc(job->pool, sizeof("HTTP 000: ") - 1 + 100);
    if (error.data == NULL) {
        ngx_str_set(&error, "out of memory");
        ngx_http_orbit_test_jobs_finish(job, ORBIT_JOB_RETRY, status, &error,
                                        0);
        return;
    }

    error.len = ngx_snprintf(error.data, sizeof("HTTP 000: ") - 1 + 100,
                             "HTTP %ui: %V", status, &req->response)
                - error.data;

    if (status == 429 || status >= 500) {
        ngx_http_orbit_test_jobs_finish(job, ORBIT_JOB_RETRY, status, &error,
                                 ngx_http_orbit_test_jobs_retry_after(req));
        return;
    }

    ngx_http_orbit_test_jobs_finish(job, ORBIT_JOB_FAIL, status, &error, 0);
}


/* Retry-After in seconds; 0 when absent (the queue's backoff) */

static ngx_msec_t
ngx_http_orbit_test_jobs_retry_after(orbit_http_req_t *req)
{
    ngx_int_t         n;
    ngx_uint_t        i;
    ngx_table_elt_t  *h;

    h = req->response_headers->elts;

    for (i = 0; i < req->response_headers->nelts; i++) {
        if (h[i].key.len == sizeof("Retry-After") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Retry-After",
                               sizeof("Retry-After") - 1) == 0)
        {
            n = ngx_atoi(h[i].value.data, h[i].value.len);
            return n > 0 ? (ngx_msec_t) n * 1000 : 0;
        }
    }

    return 0;
}


static void
ngx_http_orbit_test_jobs_finish(orbit_job_t *job, orbit_job_status_e status,
    ngx_uint_t http, ngx_str_t *error, ngx_msec_t delay)
{
    u_char               *p;
    json_t               *effect;
    const char          **values;
    orbit_job_outcome_t   out;

    static const char  *outcomes[] = { "done", "retry", "failed", "repeat" };

    ngx_memzero(&out, sizeof(orbit_job_outcome_t));

    out.status = status;
    out.delay = delay;

    if (error) {
        out.error = *error;
    }

    values = ngx_palloc(job->pool, 3 * sizeof(char *));
    p = ngx_pnalloc(job->pool, 2 * (NGX_INT_T_LEN + 1));

    if (values == NULL || p == NULL) {
        /* no effect then: the outcome still counts */
        orbit_job_finish(job, &out);
        return;
    }

    values[0] = (char *) p;
    p = ngx_sprintf(p, "%ui%Z", job->attempt);
    values[1] = outcomes[status];
    values[2] = (char *) p;
    (void) ngx_sprintf(p, "%ui%Z", http);

    out.effect = "INSERT INTO test_job_effects"
                 " (job_id, attempt, outcome, http_status)"
                 " SELECT id, $1::integer, $2, $3::integer FROM job";
    out.nparams = 3;
    out.values = values;

    effect = json_object_get(job->json, "effect");

    if (json_is_string(effect)
        && ngx_strcmp(json_string_value(effect), "broken") == 0)
    {
        out.effect = "INSERT INTO test_job_effects_missing (job_id)"
                     " SELECT id FROM job";
        out.nparams = 0;
    }

    orbit_job_finish(job, &out);
}
