#include "addon.h"

#include <libpq-fe.h>

#include <algorithm>

#include "args.h"
#include "conninfo.h"
#include "connection.h"
#include "handler.h"
#include "testing.h"

#ifndef LIBPQ_HAS_PIPELINING
#error "session-pgsql needs libpq >= 14 (pipeline mode); install a newer libpq-dev"
#endif

namespace spg {

Addon::Addon(Napi::Env env, Napi::Object exports) : env_(env) {
  napi_get_uv_event_loop(env, &loop_);
  resource_ = Napi::Persistent(Napi::Object::New(env));
  napi_async_init(env, resource_.Value(), Napi::String::New(env, "session-pgsql"), &async_context_);

  flusher_ = new uv_prepare_t;
  uv_prepare_init(loop_, flusher_);
  flusher_->data = this;
  uv_unref(reinterpret_cast<uv_handle_t*>(flusher_));
  HandleOpened();

  napi_add_async_cleanup_hook(env, OnTeardown, this, &teardown_hook_);

  handler_constructor = Napi::Persistent(Handler::Define(env, this));
  DefineAddon(exports, {
                           InstanceMethod("initialize", &Addon::JsInitialize),
                           InstanceMethod("inspectConninfo", &Addon::JsInspectConninfo),
                           InstanceValue("libpqVersion", Napi::Number::New(env, PQlibVersion())),
                           InstanceValue("Handler", handler_constructor.Value()),
                           InstanceValue("__settleForTest",
                                         Napi::Function::New(env, JsSettleForTest)),
                           InstanceValue("__gcPlanForTest",
                                         Napi::Function::New(env, JsGcPlanForTest)),
                       });
}

void Addon::Register(Connection* conn) { connections_.insert(conn); }

void Addon::Unregister(Connection* conn) {
  connections_.erase(conn);
  UnscheduleFlush(conn);
}

void Addon::Register(Resident* handler) { handlers_.insert(handler); }
void Addon::Unregister(Resident* handler) { handlers_.erase(handler); }

void Addon::ScheduleFlush(Connection* conn) {
  if (tearing_down_) return;
  if (dirty_.empty()) uv_prepare_start(flusher_, OnPrepare);
  dirty_.push_back(conn);
}

void Addon::UnscheduleFlush(Connection* conn) {
  dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), conn), dirty_.end());
}

// Runs before the loop waits for I/O: everything JS queued since the last turn
// goes out in one write per connection.
void Addon::OnPrepare(uv_prepare_t* handle) { static_cast<Addon*>(handle->data)->FlushDue(); }

void Addon::FlushDue() {
  JsScope scope(this);
  std::vector<Connection*> due;
  due.swap(dirty_);
  uv_prepare_stop(flusher_);
  for (Connection* conn : due) {
    // why: a flush can fail a connection, whose delegate may close others in
    // `due`; Unregister removes closed ones from dirty_, so re-check membership.
    if (connections_.count(conn) != 0 && !conn->closed()) conn->Flush();
  }
}

void Addon::RunDeliveries() {
  // why 8: of the sizes tried in `npm run bench` (2 to 16, and all at once)
  // it did best at 16 and 64 users once reads were merged; 4 had been best
  // before. Answering everything at once made client and server take turns:
  // a third fewer requests per second at 64 users.
  constexpr size_t kChunk = 8;
  if (delivering_) return;
  delivering_ = true;
  while (!deliveries_.empty() && !tearing_down_) {
    {
      JsScope scope(this);  // the outermost scope: continuations run as it closes
      for (size_t i = 0; i < kChunk && !deliveries_.empty(); ++i) {
        std::unique_ptr<Op> op = std::move(deliveries_.front());
        deliveries_.pop_front();
        if (op->done) op->done(*op);
      }
    }
    if (!dirty_.empty()) FlushDue();
  }
  delivering_ = false;
}

void Addon::HandleClosed() {
  --open_handles_;
  MaybeFinishTeardown();
}

void Addon::OnTeardown(napi_async_cleanup_hook_handle hook, void* arg) {
  auto* self = static_cast<Addon*>(arg);
  self->tearing_down_ = true;
  self->dirty_.clear();
  self->deliveries_.clear();  // their promises are dropped with the rest
  // Handlers close their servers (timers included); pending promises are dropped,
  // as no JS can run any more.
  std::vector<Resident*> handlers(self->handlers_.begin(), self->handlers_.end());
  for (Resident* handler : handlers) handler->Abandon();
  std::vector<Connection*> conns(self->connections_.begin(), self->connections_.end());
  for (Connection* conn : conns) conn->Close();
  uv_close(reinterpret_cast<uv_handle_t*>(self->flusher_), [](uv_handle_t* h) {
    auto* addon = static_cast<Addon*>(h->data);
    delete reinterpret_cast<uv_prepare_t*>(h);
    addon->HandleClosed();
  });
  self->flusher_ = nullptr;
  self->MaybeFinishTeardown();
}

void Addon::MaybeFinishTeardown() {
  if (!tearing_down_ || open_handles_ > 0 || teardown_hook_ == nullptr) return;
  napi_async_cleanup_hook_handle hook = teardown_hook_;
  teardown_hook_ = nullptr;
  napi_async_destroy(env_, async_context_);
  napi_remove_async_cleanup_hook(hook);
}

Napi::Value Addon::Throw(Napi::Env env, const ErrorInfo& error) {
  Napi::Error(env, ToJs(env, error_class_, error)).ThrowAsJavaScriptException();
  return env.Undefined();
}

// Called once, as the facade loads the addon (better-sqlite3's initialize()):
// every handler of this environment then builds its errors and rows with them.
Napi::Value Addon::JsInitialize(const Napi::CallbackInfo& info) {
  ArgReader args(info, "initialize(errorClass: Function, makeRow: Function)");
  Napi::Function error_class = args.Function(0);
  Napi::Function make_row = args.Function(1);
  if (!args.ok()) return Throw(info.Env(), args.error());
  error_class_ = Napi::Persistent(error_class);
  row_factory_ = Napi::Persistent(make_row);
  return info.Env().Undefined();
}

Napi::Value Addon::JsInspectConninfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "inspectConninfo(entry: string)");
  std::string entry = args.String(0);
  if (!args.ok()) return Throw(env, args.error());
  ServerSpec spec;
  std::string error;
  if (!ParseServerSpec(entry, &spec, &error)) {
    return Throw(env, MakeError(code::kInvalidOption, error));
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("redacted", spec.redacted);
  out.Set("identity", spec.identity);
  return out;
}

}  // namespace spg

using SessionPgsqlAddon = spg::Addon;
NODE_API_ADDON(SessionPgsqlAddon)
