// What the layers below the handler (connections, servers, housekeeping) need
// of their environment's event loop: the uv loop, the count of open uv
// handles, the per-turn flush, the few-at-a-time delivery of settled ops, and
// a scope in which native callbacks may run JavaScript. Addon implements it;
// the lower layers see only this interface, never the addon.
//
// Thread: the JS thread of one environment. Lifetime: the environment's.
#pragma once

#include <napi.h>
#include <uv.h>

#include <memory>
#include <optional>

namespace spg {

class Connection;
struct Op;

class Loop {
 public:
  // Opens a HandleScope and a CallbackScope around native callbacks that may
  // settle promises, so their continuations run when the scope closes. Opens
  // nothing once the environment is tearing down (no JS can run then).
  class JsScope {
   public:
    explicit JsScope(Loop* loop) {
      if (loop->tearing_down()) return;
      env_ = loop->scope_env();
      handles_.emplace(env_);
      if (napi_open_callback_scope(env_, loop->scope_resource(), loop->scope_context(),
                                   &scope_) != napi_ok) {
        scope_ = nullptr;
      }
    }
    ~JsScope() {
      if (scope_ != nullptr) napi_close_callback_scope(env_, scope_);
    }
    JsScope(const JsScope&) = delete;
    JsScope& operator=(const JsScope&) = delete;

   private:
    std::optional<Napi::HandleScope> handles_;
    napi_env env_ = nullptr;
    napi_callback_scope scope_ = nullptr;
  };

  virtual uv_loop_t* loop() const = 0;
  virtual bool tearing_down() const = 0;

  // Live connections, closed by the environment's teardown.
  virtual void Register(Connection* conn) = 0;
  virtual void Unregister(Connection* conn) = 0;
  // Settled ops whose callbacks run after the current poll callback, a few at
  // a time (see Addon::RunDeliveries).
  virtual void Deliver(std::unique_ptr<Op> op) = 0;
  virtual void RunDeliveries() = 0;
  // `conn` has output to send before the loop next waits for I/O.
  virtual void ScheduleFlush(Connection* conn) = 0;
  virtual void UnscheduleFlush(Connection* conn) = 0;
  // Every uv handle is counted from init to its close callback, so teardown
  // knows when the loop holds nothing of ours.
  virtual void HandleOpened() = 0;
  virtual void HandleClosed() = 0;

 protected:
  ~Loop() = default;

 private:
  // What JsScope opens its scopes with.
  virtual napi_env scope_env() const = 0;
  virtual napi_value scope_resource() const = 0;
  virtual napi_async_context scope_context() const = 0;
};

// Closes a uv handle that `loop` counted, freeing it as a T.
template <typename T>
void CloseHandle(Loop* loop, T* handle) {
  handle->data = loop;  // the close callback only needs the loop
  uv_close(reinterpret_cast<uv_handle_t*>(handle), [](uv_handle_t* h) {
    auto* loop = static_cast<Loop*>(h->data);
    delete reinterpret_cast<T*>(h);
    loop->HandleClosed();
  });
}

}  // namespace spg
