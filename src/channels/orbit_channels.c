/*
 * OrbitDesk channels: the table of adapters.  A channel is served once it
 * is listed here.
 */

#include "channels/orbit_channel.h"


static const orbit_channel_t  *orbit_channels[] = {
    &orbit_channel_whatsapp,
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
