/*
 * OrbitDesk test diagnostics: what the test modules share.
 */

#ifndef _NGX_HTTP_ORBIT_TEST_MODULE_H_INCLUDED_
#define _NGX_HTTP_ORBIT_TEST_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* status, Content-Type (NULL: text/plain) and a body that outlives us */
ngx_int_t ngx_http_orbit_test_send(ngx_http_request_t *r, ngx_uint_t status,
    ngx_str_t *type, u_char *data, size_t len);

/* finalize from a driver callback, then run the posted requests */
void ngx_http_orbit_test_finish(ngx_http_request_t *r, ngx_int_t rc);


#endif /* _NGX_HTTP_ORBIT_TEST_MODULE_H_INCLUDED_ */
