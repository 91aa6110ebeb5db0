// Fan-out: one call on every server joined into one promise (Join), the
// barrier that open() and reset() wait on, gc/vacuum/stats/list/clear, a
// user's sessions (listed, revoked) and status across the servers.
#include "handler.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <unordered_map>
#include <utility>

#include "args.h"
#include "copies.h"
#include "results.h"
#include "versions.h"

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
    // The records the server keeps for others are replayed too (records.cc):
    // GC is when a server's leftovers are looked after.
    server->housekeeping().Gc(true, [this, join, removed, server](const ErrorInfo& error,
                                                                   long long n) {
      *removed += static_cast<double>(n);
      Sweep(server, [this, join, error] { StepDone(join, error); });
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

std::string TextArray(const std::vector<std::string>& values) {
  std::string out = "{";
  for (const std::string& value : values) {
    if (out.size() > 1) out.push_back(',');
    out.push_back('"');
    for (char c : value) {
      if (c == '"' || c == '\\') out.push_back('\\');
      out.push_back(c);
    }
    out.push_back('"');
  }
  out.push_back('}');
  return out;
}

namespace {

// One stored copy of a session (a row of kUserRowsStmt).
struct Copy : CopyFacts {
  int server = -1;
  std::string custom;
  std::string addr_created, addr_modified;
};

// Servers that could not be asked, as a JS array of indexes.
Napi::Array IndexArray(Napi::Env env, const std::vector<int>& indexes) {
  Napi::Array out = Napi::Array::New(env, indexes.size());
  for (size_t i = 0; i < indexes.size(); ++i) out.Set(static_cast<uint32_t>(i), indexes[i]);
  return out;
}

}  // namespace

// sessionsOf(user): { sessions: [{ id, server, created, modified, expires,
// addressCreated, addressModified }], unreachable: [server indexes] }. Two
// rounds: the ids of the user's live rows on every server that is up, then
// every copy of those ids there, so that a copy held on a stand-in during an
// outage and the row at home count once, as the newer of the two, and a
// session whose newest copy is a tombstone or names another user is left out.
Napi::Value Handler::JsSessionsOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "sessionsOf(user: string)");
  std::string user = args.String(0);
  if (!args.ok()) return Reject(env, args.error());
  if (closing()) return ClosedError(env);
  EnsureStarted();
  struct State {
    explicit State(Napi::Env env) : deferred(Deferred::New(env)) {}
    std::string user;
    Deferred deferred;
    size_t remaining = 0;
    std::vector<Server*> asked;      // answered the first round
    std::vector<int> unreachable;    // not up, or failed
    std::vector<std::string> ids;    // of the first round, distinct
    std::unordered_map<std::string, Copy> newest;
    ErrorInfo first;
  };
  auto state = std::make_shared<State>(env);
  state->user = std::move(user);
  std::vector<Server*> servers = Routable();
  for (auto& server : servers_) {
    if (!server->routable()) state->unreachable.push_back(server->index());
  }
  if (servers.empty()) return NoServerUp(env);
  auto finish = [this, state] {
    Napi::Env env = state->deferred.Env();
    std::vector<std::pair<std::string, Copy>> live;
    for (auto& [id, copy] : state->newest) {
      if (copy.live && copy.custom == state->user) live.emplace_back(id, copy);
    }
    // Most recently seen first: what a "your sessions" page shows.
    std::sort(live.begin(), live.end(), [](const auto& a, const auto& b) {
      return a.second.modified != b.second.modified ? a.second.modified > b.second.modified
                                                    : a.first < b.first;
    });
    Napi::Array sessions = Napi::Array::New(env, live.size());
    for (size_t i = 0; i < live.size(); ++i) {
      const Copy& c = live[i].second;
      Napi::Object o = Napi::Object::New(env);
      o.Set("id", live[i].first);
      o.Set("server", c.server);
      o.Set("created", static_cast<double>(c.created));
      o.Set("modified", static_cast<double>(c.modified));
      o.Set("expires", static_cast<double>(c.expire));
      o.Set("addressCreated", c.addr_created);
      o.Set("addressModified", c.addr_modified);
      sessions.Set(static_cast<uint32_t>(i), o);
    }
    std::sort(state->unreachable.begin(), state->unreachable.end());
    Napi::Object out = Napi::Object::New(env);
    out.Set("sessions", sessions);
    out.Set("unreachable", IndexArray(env, state->unreachable));
    state->deferred.Resolve(out);
  };
  // Round two: every copy of the ids on every server that answered round one.
  auto copies = [this, state, finish] {
    if (state->asked.empty()) {
      state->deferred.Reject(JsError(state->deferred.Env(), state->first));
      return;
    }
    if (state->ids.empty()) {
      finish();
      return;
    }
    const std::string ids = TextArray(state->ids);
    state->remaining = state->asked.size();
    for (Server* server : state->asked) {
      auto op = std::make_unique<Op>();
      op->statements.push_back(Statement::Prepared(kUserRowsStmt).Bind(ids));
      op->read_only = true;
      op->done = [state, finish](Op& op) {
        if (op.error) {
          state->unreachable.push_back(op.server);
        } else {
          const PGresult* r = op.results[0].get();
          for (int i = 0; i < PQntuples(r); ++i) {
            Copy c;
            c.server = op.server;
            c.custom = Text(r, i, kUserRowCustom);
            c.created = ParseInt(r, i, kUserRowCreated);
            c.modified = ParseInt(r, i, kUserRowModified);
            c.expire = ParseInt(r, i, kUserRowExpire);
            c.addr_created = Text(r, i, kUserRowAddrCreated);
            c.addr_modified = Text(r, i, kUserRowAddrModified);
            c.versioned = !PQgetisnull(r, i, kUserRowVersion);
            c.version = ParseInt(r, i, kUserRowVersion);
            c.live = PQgetvalue(r, i, kUserRowExpired)[0] != 't';
            // The copy that stands, as the look-aside decides (copies.h).
            auto [at, fresh] = state->newest.try_emplace(Text(r, i, kUserRowId), c);
            if (!fresh && !Keeps(at->second, c)) at->second = std::move(c);
          }
        }
        if (--state->remaining == 0) finish();
      };
      Submit(server, std::move(op));
    }
  };
  state->remaining = servers.size();
  for (Server* server : servers) {
    auto op = std::make_unique<Op>();
    op->statements.push_back(Statement::Prepared(kUserIdsStmt).Bind(state->user));
    op->read_only = true;
    op->done = [this, state, copies](Op& op) {
      if (op.error) {
        if (!state->first) state->first = op.error;
        state->unreachable.push_back(op.server);
      } else {
        state->asked.push_back(servers_[op.server].get());
        const PGresult* r = op.results[0].get();
        for (int i = 0; i < PQntuples(r); ++i) state->ids.push_back(Text(r, i, 0));
      }
      if (--state->remaining > 0) return;
      std::sort(state->ids.begin(), state->ids.end());
      state->ids.erase(std::unique(state->ids.begin(), state->ids.end()), state->ids.end());
      copies();
    };
    Submit(server, std::move(op));
  }
  return state->deferred.Promise();
}

// destroySessionsOf(user, except: string[]): { destroyed, unreachable,
// recorded }. On every server that is up, that user's live sessions but
// `except` become tombstones (copies held on a stand-in included). A server
// that is not up, or fails, misses it: the revocation waits for it in this
// process, and is recorded (in the same transaction as the revocation there)
// on the servers that are up, so that it runs there before the server is up
// again in any process (records.cc), sparing sessions created since.
// `recorded`: the servers missed whose revocation some server keeps.
Napi::Value Handler::JsDestroySessionsOf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "destroySessionsOf(user: string, except: string[])");
  std::string user = args.String(0);
  Napi::Value list = args.Value(1);
  if (!args.ok()) return Reject(env, args.error());
  if (!list.IsArray()) {
    return Reject(env, code::kInvalidArgument,
                  "destroySessionsOf(user, except): expected an array of ids for except");
  }
  std::vector<std::string> spared;
  Napi::Array array = list.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value id = array.Get(i);
    if (!id.IsString()) {
      return Reject(env, code::kInvalidArgument,
                    "destroySessionsOf(user, except): except[" + std::to_string(i) +
                        "] is not a string");
    }
    spared.push_back(id.As<Napi::String>().Utf8Value());
  }
  if (closing()) return ClosedError(env);
  EnsureStarted();
  Missed revocation;
  revocation.subject = std::move(user);
  revocation.spared = TextArray(spared);
  revocation.version = NextVersion();
  revocation.before = static_cast<long long>(std::floor(NowSeconds()));
  struct State {
    explicit State(Napi::Env env) : deferred(Deferred::New(env)) {}
    Deferred deferred;
    size_t remaining = 0;
    std::vector<std::string> ids;
    std::vector<int> unreachable;
    std::vector<int> missing;       // not routable at the call: recorded with the revocation
    bool missing_recorded = false;  // some server committed the revocation with its record
    std::vector<int> lost;          // failed and went down during the call
    std::vector<int> recorded;
    std::vector<Server*> revoked;   // the servers where the revocation committed
  };
  auto state = std::make_shared<State>(env);
  auto finish = [this, state, version = revocation.version] {
    for (int server : state->recorded) {
      for (Missed& m : missed_[server]) m.recorded = m.recorded || m.version == version;
    }
    Napi::Env env = state->deferred.Env();
    std::sort(state->ids.begin(), state->ids.end());
    const size_t destroyed =
        std::unique(state->ids.begin(), state->ids.end()) - state->ids.begin();
    std::sort(state->unreachable.begin(), state->unreachable.end());
    std::sort(state->recorded.begin(), state->recorded.end());
    Napi::Object out = Napi::Object::New(env);
    out.Set("destroyed", static_cast<double>(destroyed));
    out.Set("unreachable", IndexArray(env, state->unreachable));
    out.Set("recorded", IndexArray(env, state->recorded));
    state->deferred.Resolve(out);
  };
  // Every server has answered: those lost meanwhile are recorded now, on the
  // servers where the revocation committed (one more round trip, only then).
  auto settle = [this, state, finish, revocation] {
    if (state->missing_recorded) {
      state->recorded.insert(state->recorded.end(), state->missing.begin(), state->missing.end());
    }
    std::vector<Server*> holders;
    for (Server* server : state->revoked) {
      if (server->state() == Server::State::kUp) holders.push_back(server);
    }
    if (state->lost.empty() || holders.empty()) {
      finish();
      return;
    }
    Record(revocation, state->lost, holders, [state, finish](bool stored) {
      if (stored) {
        state->recorded.insert(state->recorded.end(), state->lost.begin(), state->lost.end());
      }
      finish();
    });
  };
  std::vector<Server*> targets;
  for (auto& server : servers_) {
    if (server->routable()) {
      targets.push_back(server.get());
    } else {
      missed_[server->index()].push_back(revocation);
      state->unreachable.push_back(server->index());
      state->missing.push_back(server->index());
    }
  }
  if (targets.empty()) {
    finish();
    return state->deferred.Promise();
  }
  state->remaining = targets.size();
  for (Server* server : targets) {
    auto op = std::make_unique<Op>();
    // why: the record commits with the revocation, in the same round trip:
    // a server that revoked also keeps it for the servers it missed. Only a
    // server whose setup found the records table is asked to (the table is
    // not prepared; a missing one would fail the revocation).
    const bool records = !state->missing.empty() && server->keeps_records();
    if (records) op->statements.push_back(RecordStatement(revocation, state->missing));
    // Every session of the user is revoked as of now, whatever its age.
    op->statements.push_back(Statement::Prepared(kRevokeStmt)
                                 .Bind(revocation.subject)
                                 .Bind(revocation.spared)
                                 .Bind(std::to_string(revocation.version))
                                 .BindNull());
    op->done = [this, state, settle, revocation, records](Op& op) {
      if (op.error) {
        // A server lost meanwhile takes it on its return (perhaps it ran
        // before the connection was lost: running it again finds tombstones).
        // One that is still up failed the statement itself: nothing would
        // run it again, so the caller is told and may retry.
        if (servers_[op.server]->state() != Server::State::kUp) {
          missed_[op.server].push_back(revocation);
          state->lost.push_back(op.server);
        }
        state->unreachable.push_back(op.server);
      } else {
        state->revoked.push_back(servers_[op.server].get());
        state->missing_recorded = state->missing_recorded || records;
        const PGresult* r = op.results.back().get();
        for (int i = 0; i < PQntuples(r); ++i) state->ids.push_back(Text(r, i, 0));
      }
      if (--state->remaining == 0) settle();
    };
    Submit(server, std::move(op));
  }
  return state->deferred.Promise();
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
    setup.Set("records", found(s.records_found()));
    o.Set("setup", setup);
    auto missed = missed_.find(static_cast<int>(i));
    size_t revocations = 0;
    if (missed != missed_.end()) {
      for (const Missed& m : missed->second) revocations += m.logout ? 0 : 1;
    }
    o.Set("pendingRevocations", static_cast<double>(revocations));
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
