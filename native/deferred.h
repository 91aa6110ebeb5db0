// A promise's resolving half that never aborts the process. While a worker is
// being terminated, V8 refuses to run anything: napi_create_promise and
// napi_resolve_deferred then fail, and node-addon-api's Deferred would throw an
// unthrowable exception (a fatal error) or hand out an uninitialised promise.
// Here a failed creation yields `undefined` and a failed settlement is dropped:
// nobody is left to observe either.
//
// Thread: the JS thread. Copies share the one napi_deferred, which must be
// settled at most once (napi frees it then).
#pragma once

#include <napi.h>

namespace spg {

class Deferred {
 public:
  static Deferred New(Napi::Env env) { return Deferred(env); }

  Napi::Env Env() const { return Napi::Env(env_); }
  Napi::Value Promise() const {
    return promise_ != nullptr ? Napi::Value(env_, promise_) : Env().Undefined();
  }
  void Resolve(napi_value value) const {
    if (deferred_ != nullptr && value != nullptr) napi_resolve_deferred(env_, deferred_, value);
  }
  void Reject(napi_value value) const {
    if (deferred_ != nullptr && value != nullptr) napi_reject_deferred(env_, deferred_, value);
  }

 private:
  explicit Deferred(Napi::Env env) : env_(env) {
    if (napi_create_promise(env_, &deferred_, &promise_) != napi_ok) {
      deferred_ = nullptr;
      promise_ = nullptr;
    }
  }

  napi_env env_;
  napi_deferred deferred_ = nullptr;
  napi_value promise_ = nullptr;
};

}  // namespace spg
