/*
 * berth's native part, built at install by native/build.mjs; berth works without it
 * (src/native.ts):
 *   sendfile.c  sendNow, start, cancel: sendfile(2) for plain downloads
 *   lstat.c     lstatNames: the entries of one directory stat'ed relative to it, for listings
 */
#define NAPI_VERSION 8
#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME berth_native
#endif
#include <node_api.h>

#include "berth.h"

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
    { "sendNow", NULL, berth_send_now, NULL, NULL, NULL, napi_enumerable, NULL },
    { "start", NULL, berth_send_start, NULL, NULL, NULL, napi_enumerable, NULL },
    { "cancel", NULL, berth_send_cancel, NULL, NULL, NULL, napi_enumerable, NULL },
    { "lstatNames", NULL, berth_lstat_names, NULL, NULL, NULL, napi_enumerable, NULL },
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}
