// Fan-out: one call on every server joined into one promise (Join), the
// barrier that open() and reset() wait on, and gc/vacuum/stats/list/clear
// and status across the servers.
#include "handler.h"

#include <memory>
#include <utility>

#include "results.h"

namespace spg {

std::vector<Server*> Handler::Routable() const {
  std::vector<Server*> out;
  for (const auto& server : servers_) {
    if (server->routable()) out.push_back(server.get());
  }
  return out;
}

std::shared_ptr<Handler::Join> Handler::NewJoin(Napi::Env env, size_t steps,
                                                std::function<Napi::Value(Napi::Env)> result) {
  return std::make_shared<Join>(Join{steps, {}, Deferred::New(env), std::move(result)});
}

void Handler::StepDone(const std::shared_ptr<Join>& join, const ErrorInfo& error) {
  if (error && !join->error) join->error = error;
  if (--join->remaining > 0) return;
  Napi::Env env = join->deferred.Env();
  if (join->error) {
    join->deferred.Reject(JsError(env, join->error));
  } else {
    join->deferred.Resolve(join->result(env));
  }
}

void Handler::Barrier(std::function<void(bool, ErrorInfo)> done) {
  struct State {
    size_t remaining;
    bool any = false;
    std::string reasons;
    ErrorInfo first;
    std::function<void(bool, ErrorInfo)> done;
  };
  auto state = std::make_shared<State>();
  state->remaining = servers_.size();
  state->done = std::move(done);
  const size_t count = servers_.size();
  for (auto& server : servers_) {
    auto op = std::make_unique<Op>();
    op->done = [state, count](Op& op) {
      if (op.error) {
        if (!state->first) state->first = op.error;
        state->reasons += (state->reasons.empty() ? "" : "; ") + op.error.message;
      } else {
        state->any = true;
      }
      if (--state->remaining > 0) return;
      ErrorInfo error = state->first;
      if (count > 1) {
        error =
            MakeError(code::kNoServer, "no server could be reached: " + state->reasons, -1, true);
      }
      state->done(state->any, std::move(error));
    };
    Submit(server.get(), std::move(op));
  }
}

Napi::Value Handler::JsOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing()) return ClosedError(env);
  EnsureStarted();
  auto deferred = Deferred::New(env);
  Barrier([this, deferred](bool any, ErrorInfo error) {
    if (any) {
      deferred.Resolve(deferred.Env().Undefined());
    } else {
      deferred.Reject(JsError(deferred.Env(), error));
    }
  });
  return deferred.Promise();
}

Napi::Value Handler::JsReset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing()) return ClosedError(env);
  if (started_) {
    for (auto& server : servers_) server->Reconnect();
  }
  EnsureStarted();
  auto deferred = Deferred::New(env);
  Barrier([deferred](bool any, ErrorInfo) {
    deferred.Resolve(Napi::Boolean::New(deferred.Env(), any));
  });
  return deferred.Promise();
}

Napi::Value Handler::OnEveryServer(Napi::Env env, const std::string& sql,
                                   std::function<void(const PGresult*)> each,
                                   std::function<Napi::Value(Napi::Env)> result) {
  if (closing()) return ClosedError(env);
  EnsureStarted();
  std::vector<Server*> servers = Routable();
  if (servers.empty()) return NoServerUp(env);
  auto join = NewJoin(env, servers.size(), std::move(result));
  for (Server* server : servers) {
    auto op = std::make_unique<Op>();
    op->statements.push_back(Statement::Text(sql));
    op->done = [this, join, each](Op& op) {
      if (!op.error) each(op.results[0].get());
      StepDone(join, op.error);
    };
    Submit(server, std::move(op));
  }
  return join->deferred.Promise();
}

Napi::Value Handler::JsGc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing()) return ClosedError(env);
  EnsureStarted();
  std::vector<Server*> servers = Routable();
  if (servers.empty()) return NoServerUp(env);
  auto removed = std::make_shared<double>(0);
  auto join = NewJoin(env, servers.size(),
                      [removed](Napi::Env env) { return Napi::Number::New(env, *removed); });
  for (Server* server : servers) {
    server->housekeeping().Gc(true, [this, join, removed](const ErrorInfo& error, long long n) {
      *removed += static_cast<double>(n);
      StepDone(join, error);
    });
  }
  return join->deferred.Promise();
}

// Resolves to the number of servers where VACUUM ran.
Napi::Value Handler::JsVacuum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing()) return ClosedError(env);
  EnsureStarted();
  std::vector<Server*> servers = Routable();
  if (servers.empty()) return NoServerUp(env);
  auto ran = std::make_shared<double>(0);
  auto join =
      NewJoin(env, servers.size(), [ran](Napi::Env env) { return Napi::Number::New(env, *ran); });
  for (Server* server : servers) {
    server->housekeeping().Vacuum(true, [this, join, ran](const ErrorInfo& error, bool did) {
      *ran += did;
      StepDone(join, error);
    });
  }
  return join->deferred.Promise();
}

// Per server: { rows, expired, bytes } or { error } when it could not be asked.
Napi::Value Handler::JsStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closing()) return ClosedError(env);
  EnsureStarted();
  struct State {
    size_t remaining;
    Napi::ObjectReference out;
    Deferred deferred;
    State(Napi::Env env, size_t n)
        : remaining(n),
          out(Napi::Persistent(Napi::Array::New(env, n).As<Napi::Object>())),
          deferred(Deferred::New(env)) {}
  };
  auto state = std::make_shared<State>(env, servers_.size());
  for (auto& server : servers_) {
    auto op = std::make_unique<Op>();
    op->statements.push_back(Statement::Text(sql_->stats).Bind(table_));
    op->done = [this, state](Op& op) {
      Napi::Env env = state->deferred.Env();
      Napi::Object entry = Napi::Object::New(env);
      if (op.error) {
        entry.Set("error", JsError(env, op.error));
      } else {
        const PGresult* r = op.results[0].get();
        entry.Set("rows", static_cast<double>(ParseInt(r, 0, 0)));
        entry.Set("expired", static_cast<double>(ParseInt(r, 0, 1)));
        entry.Set("bytes", static_cast<double>(ParseInt(r, 0, 2)));
      }
      state->out.Value().Set(static_cast<uint32_t>(op.server), entry);
      if (--state->remaining == 0) state->deferred.Resolve(state->out.Value());
    };
    Submit(server.get(), std::move(op));
  }
  return state->deferred.Promise();
}

// Every live session on every server that is up, as [{ id, data }]; a server
// that fails makes the whole call fail (a partial list would mislead).
Napi::Value Handler::JsList(const Napi::CallbackInfo& info) {
  auto rows = std::make_shared<std::vector<std::pair<std::string, std::string>>>();
  return OnEveryServer(
      info.Env(), sql_->list,
      [rows](const PGresult* r) {
        for (int i = 0; i < PQntuples(r); ++i) rows->emplace_back(Text(r, i, 0), Text(r, i, 1));
      },
      [rows](Napi::Env env) -> Napi::Value {
        Napi::Array out = Napi::Array::New(env, rows->size());
        for (size_t i = 0; i < rows->size(); ++i) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("id", (*rows)[i].first);
          o.Set("data", (*rows)[i].second);
          out.Set(static_cast<uint32_t>(i), o);
        }
        return out;
      });
}

// Deletes every session on every server that is up; resolves to the count.
Napi::Value Handler::JsClear(const Napi::CallbackInfo& info) {
  auto removed = std::make_shared<double>(0);
  return OnEveryServer(
      info.Env(), sql_->clear,
      [removed](const PGresult* r) { *removed += static_cast<double>(AffectedRows(r)); },
      [removed](Napi::Env env) -> Napi::Value { return Napi::Number::New(env, *removed); });
}

Napi::Value Handler::JsStatus(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array servers = Napi::Array::New(env, servers_.size());
  static const char* kStates[] = {"down", "connecting", "up"};
  for (size_t i = 0; i < servers_.size(); ++i) {
    const Server& s = *servers_[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", static_cast<double>(i));
    o.Set("server", s.spec().redacted);
    o.Set("state", kStates[static_cast<int>(s.state())]);
    // Which host of a multi-host entry is in use (null while not up).
    if (s.host_in_use().empty()) {
      o.Set("host", env.Null());
      o.Set("port", env.Null());
    } else {
      o.Set("host", s.host_in_use());
      const std::string& port = s.port_in_use();
      const bool numeric =
          !port.empty() && port.find_first_not_of("0123456789") == std::string::npos;
      o.Set("port", numeric ? Napi::Value(Napi::Number::New(env, std::stod(port))) : env.Null());
    }
    o.Set("since", s.state_since());
    o.Set("operations", static_cast<double>(s.operations()));
    o.Set("failures", static_cast<double>(s.failures()));
    auto run = [&](const Housekeeping::Run& r) -> Napi::Value {
      if (!r.valid) return env.Null();
      Napi::Object o = Napi::Object::New(env);
      o.Set("at", r.at);
      o.Set("duration", r.duration);
      o.Set("removed", static_cast<double>(r.removed));
      o.Set("error", r.error.empty() ? env.Null() : Napi::String::New(env, r.error));
      return o;
    };
    auto found = [&](Server::Found f) -> Napi::Value {
      static const char* kFound[] = {nullptr, "existed", "created", "missing"};
      if (f == Server::Found::kUnknown) return env.Null();
      return Napi::String::New(env, kFound[static_cast<int>(f)]);
    };
    Napi::Object setup = Napi::Object::New(env);
    setup.Set("table", found(s.table_found()));
    setup.Set("housekeeping", found(s.housekeeping_found()));
    setup.Set("version", found(s.version_found()));
    setup.Set("index", found(s.index_found()));
    o.Set("setup", setup);
    o.Set("lastGc", run(s.housekeeping().last_gc()));
    o.Set("lastVacuum", run(s.housekeeping().last_vacuum()));
    if (s.last_error()) {
      Napi::Object e = Napi::Object::New(env);
      e.Set("code", s.last_error().code);
      e.Set("message", s.last_error().message);
      o.Set("lastError", e);
    } else {
      o.Set("lastError", env.Null());
    }
    servers.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("servers", servers);
  out.Set("numberOfServers", static_cast<double>(servers_.size()));
  // shortCircuit is the facade's setting alone: it adds it.
  out.Set("failoverMode", placement_name_ == "failover");
  out.Set("keepExpired", keep_expired_);
  out.Set("maxLifetime", static_cast<double>(max_lifetime_));
  out.Set("placement", placement_name_);
  out.Set("table", table_);
  out.Set("inFlight", static_cast<double>(in_flight_));
  out.Set("closed", closed_ || closing_);
  return out;
}

}  // namespace spg
