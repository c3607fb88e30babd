/*
 * OrbitDesk channels: the table of adapters.  A channel is served once it
 * is listed here.
 */

#include "channels/orbit_channel.h"


static const orbit_channel_t  *orbit_channels[] = {
    &orbit_channel_whatsapp,
    &orbit_channel_livechat,
};


const orbit_channel_t *
orbit_channel_find(u_char *name, size_t len)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(orbit_channels) / sizeof(orbit_channels[0]); i++) {
        if (ngx_strlen(orbit_channels[i]->name) == len
            && ngx_strncmp(orbit_channels[i]->name, name, len) == 0)
        {
            return orbit_channels[i];
        }
    }

    return NULL;
}


json_t *
orbit_channel_item(orbit_channel_in_t *in, const char *kind,
    const char *channel, const char *account)
{
    json_t  *item;

    item = json_pack("{s:s, s:s, s:s}", "kind", kind, "channel", channel,
                     "account", account);

    if (item == NULL || json_array_append_new(in->items, item) != 0) {
        return NULL;
    }

    return item;
}


void
orbit_channel_error(orbit_channel_out_t *out, ngx_int_t code,
    const char *title)
{
    char    *e;
    json_t  *j;

    j = json_pack("{s:I, s:s}", "code", (json_int_t) code, "title", title);
    e = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    if (e == NULL) {
        ngx_str_null(&out->error);
        return;
    }

    out->error.len = ngx_strlen(e);
    out->error.data = ngx_pnalloc(out->pool, out->error.len);

    if (out->error.data) {
        ngx_memcpy(out->error.data, e, out->error.len);

    } else {
        out->error.len = 0;
    }

    free(e);
}


ngx_int_t
orbit_channel_header(orbit_channel_out_t *out, const char *name,
    const char *value)
{
    ngx_str_t  line;

    line.len = ngx_strlen(name) + 2 + ngx_strlen(value);
    line.data = ngx_pnalloc(out->pool, line.len);
    if (line.data == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(line.data, "%s: %s", name, value);

    return orbit_http_req_header(out->req, &line);
}
