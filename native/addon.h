// Per-environment state (main thread or one worker): the uv loop, the prepare
// hook that flushes connections once per loop turn, the registry of live
// connections and handlers, and the teardown that closes them all. The top of
// the module graph: the layers below see it only as a Loop or an Environment.
//
// Thread: the JS thread of its environment. Lifetime: the environment's; the
// async cleanup hook closes every connection and handle before the loop stops.
#pragma once

#include <napi.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <unordered_set>
#include <vector>

#include "environment.h"
#include "errors.h"

namespace spg {

class Connection;
struct Op;

class Addon final : public Napi::Addon<Addon>, public Environment {
 public:
  Addon(Napi::Env env, Napi::Object exports);

  Napi::Env env() const { return env_; }

  // Loop
  uv_loop_t* loop() const override { return loop_; }
  bool tearing_down() const override { return tearing_down_; }
  void Register(Connection* conn) override;
  void Unregister(Connection* conn) override;
  // Settled ops whose callbacks run after the current poll callback, a few at
  // a time: each few in their own callback scope (so promise continuations run
  // and queue their next operations), then a flush, so the server starts on
  // those while the next few are answered.
  void Deliver(std::unique_ptr<Op> op) override { deliveries_.push_back(std::move(op)); }
  void RunDeliveries() override;
  void ScheduleFlush(Connection* conn) override;
  void UnscheduleFlush(Connection* conn) override;
  void HandleOpened() override { ++open_handles_; }
  void HandleClosed() override;

  // Environment
  const Napi::FunctionReference& error_class() const override { return error_class_; }
  const Napi::FunctionReference& row_factory() const override { return row_factory_; }
  void Register(Resident* handler) override;
  void Unregister(Resident* handler) override;

  Napi::FunctionReference handler_constructor;

 private:
  napi_env scope_env() const override { return env_; }
  napi_value scope_resource() const override { return resource_.Value(); }
  napi_async_context scope_context() const override { return async_context_; }
  static void OnPrepare(uv_prepare_t* handle);
  void FlushDue();
  static void OnTeardown(napi_async_cleanup_hook_handle hook, void* arg);
  void MaybeFinishTeardown();
  Napi::Value JsInitialize(const Napi::CallbackInfo& info);
  Napi::Value JsInspectConninfo(const Napi::CallbackInfo& info);
  // Throws `error` as the registered error class would (a sync binding's way).
  Napi::Value Throw(Napi::Env env, const ErrorInfo& error);

  Napi::Env env_;
  uv_loop_t* loop_ = nullptr;
  uv_prepare_t* flusher_ = nullptr;  // owned; unref'd, started while flushes are due
  napi_async_context async_context_ = nullptr;
  Napi::ObjectReference resource_;  // the async resource of every callback scope
  Napi::FunctionReference error_class_;  // the facade's SessionPgsqlError
  Napi::FunctionReference row_factory_;  // the facade's nativeRow(...fields)
  int open_handles_ = 0;
  napi_async_cleanup_hook_handle teardown_hook_ = nullptr;
  bool tearing_down_ = false;
  std::vector<Connection*> dirty_;
  std::deque<std::unique_ptr<Op>> deliveries_;
  bool delivering_ = false;
  std::unordered_set<Connection*> connections_;
  std::unordered_set<Resident*> handlers_;
};

}  // namespace spg
