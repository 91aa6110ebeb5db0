// Per-environment state (main thread or one worker): the uv loop, the prepare
// hook that flushes connections once per loop turn, the registry of live
// connections and handlers, and the teardown that closes them all.
//
// Thread: the JS thread of its environment. Lifetime: the environment's; the
// async cleanup hook closes every connection and handle before the loop stops.
#pragma once

#include <napi.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <optional>
#include <unordered_set>
#include <vector>

namespace spg {

class Connection;
class Handler;
struct Op;

class Addon : public Napi::Addon<Addon> {
 public:
  Addon(Napi::Env env, Napi::Object exports);

  // Opens a HandleScope and a CallbackScope around native callbacks that may
  // settle promises, so their continuations run when the scope closes.
  class JsScope {
   public:
    explicit JsScope(Addon* addon);
    ~JsScope();

   private:
    std::optional<Napi::HandleScope> handles_;
    napi_env env_ = nullptr;
    napi_callback_scope scope_ = nullptr;
  };

  uv_loop_t* loop() const { return loop_; }
  bool tearing_down() const { return tearing_down_; }
  Napi::Env env() const { return env_; }

  void Register(Connection* conn);
  void Unregister(Connection* conn);
  void Register(Handler* handler);
  void Unregister(Handler* handler);
  // Settled ops whose callbacks run after the current poll callback, a few at
  // a time: each few in their own callback scope (so promise continuations run
  // and queue their next operations), then a flush, so the server starts on
  // those while the next few are answered.
  void Deliver(std::unique_ptr<Op> op) { deliveries_.push_back(std::move(op)); }
  void RunDeliveries();
  void ScheduleFlush(Connection* conn);
  void UnscheduleFlush(Connection* conn);
  // Every uv handle of the addon is counted from init to its close callback, so
  // teardown knows when the loop holds nothing of ours.
  void HandleOpened() { ++open_handles_; }
  void HandleClosed();

  Napi::FunctionReference handler_constructor;

 private:
  static void OnPrepare(uv_prepare_t* handle);
  void FlushDue();
  static void OnTeardown(napi_async_cleanup_hook_handle hook, void* arg);
  void MaybeFinishTeardown();
  Napi::Value JsInspectConninfo(const Napi::CallbackInfo& info);

  Napi::Env env_;
  uv_loop_t* loop_ = nullptr;
  uv_prepare_t* flusher_ = nullptr;  // owned; unref'd, started while flushes are due
  napi_async_context async_context_ = nullptr;
  Napi::ObjectReference resource_;  // the async resource of every callback scope
  int open_handles_ = 0;
  napi_async_cleanup_hook_handle teardown_hook_ = nullptr;
  bool tearing_down_ = false;
  std::vector<Connection*> dirty_;
  std::deque<std::unique_ptr<Op>> deliveries_;
  bool delivering_ = false;
  std::unordered_set<Connection*> connections_;
  std::unordered_set<Handler*> handlers_;
};

}  // namespace spg
