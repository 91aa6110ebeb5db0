#include "handler.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <iterator>
#include <memory>
#include <random>
#include <utility>

#include "addon.h"
#include "results.h"

namespace spg {

namespace {

// --- versions: the order of a session's writes is the order in which they
// were issued, not the order in which some server ran them. A version is
// (microseconds of Unix time when issued) << kTagBits | (this process's tag).
// One clock per process (worker threads included): each version is greater
// than every one this process issued or read before, so within a process the
// order is exact whatever the wall clock does; the tag keeps two processes
// from issuing the same value in the same microsecond (unless they drew the
// same tag, 1 in 2048). 52 bits of microseconds last until the year 2112.
constexpr int kTagBits = 11;
// The greatest version the clock may be moved to: one more still fits in 63 bits.
constexpr long long kMaxVersion = (((1LL << 52) - 1) << kTagBits) - 1;
std::atomic<long long> version_clock{0};

long long Tag() {
  static const long long tag = std::random_device{}() & ((1LL << kTagBits) - 1);
  return tag;
}

long long NextVersion() {
  const long long now = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  long long seen = version_clock.load(std::memory_order_relaxed);
  for (;;) {
    const long long version = (std::max(now, (seen >> kTagBits) + 1) << kTagBits) | Tag();
    if (version_clock.compare_exchange_weak(seen, version, std::memory_order_relaxed)) {
      return version;
    }
  }
}

// A version read from a server moves the clock past it: a write issued after
// reading a session orders after what was read even when the host that wrote
// it has a clock ahead of ours (a hybrid logical clock). Values beyond the
// format's range (set by hand) are ignored rather than overflow.
void ObserveVersion(const PGresult* r, int row, int col) {
  if (row >= PQntuples(r) || PQgetisnull(r, row, col)) return;
  const long long version = ParseInt(r, row, col);
  if (version <= 0 || version > kMaxVersion) return;
  long long seen = version_clock.load(std::memory_order_relaxed);
  while (version > seen &&
         !version_clock.compare_exchange_weak(seen, version, std::memory_order_relaxed)) {
  }
}

// One element of a PostgreSQL array literal: NULL, or the value in double
// quotes with its quotes and backslashes escaped.
void AppendElement(std::string* out, const Statement& s, size_t param) {
  if (s.is_null[param]) {
    out->append("NULL");
    return;
  }
  out->push_back('"');
  for (char c : s.params[param]) {
    if (c == '"' || c == '\\') out->push_back('\\');
    out->push_back(c);
  }
  out->push_back('"');
}

// Parameter `param` of each statement, as one PostgreSQL array literal.
std::string ArrayOf(const std::vector<const Statement*>& statements, size_t param) {
  std::string array = "{";
  for (const Statement* s : statements) {
    if (array.size() > 1) array.push_back(',');
    AppendElement(&array, *s, param);
  }
  array.push_back('}');
  return array;
}

// kWriteManyStmt from single writes (kWriteStmt parameters: $1 id, $2 name,
// $3 data, $4 address, $5 expires, $6 custom (null here), $7..$9 counts,
// $10 message, $11 version): the name once, then one array per other column.
Statement WriteMany(const std::vector<const Statement*>& writes) {
  Statement many = Statement::Prepared(kWriteManyStmt);
  many.Bind(writes.front()->params[1]);
  for (size_t param : {0, 2, 3, 4, 6, 7, 8, 9, 10}) many.Bind(ArrayOf(writes, param));
  return many;
}

// kReadManyStmt from single reads (kReadStmt: $1 id): one array of the ids.
Statement ReadMany(const std::vector<const Statement*>& reads) {
  Statement many = Statement::Prepared(kReadManyStmt);
  many.Bind(ArrayOf(reads, 0));
  return many;
}

// Whether row `row` of a read's result holds a stored session: a merged read
// has a row for every id, null where there is none.
bool Found(const PGresult* r, int row) { return row < PQntuples(r) && !PQgetisnull(r, row, 11); }

// why: PostgreSQL drops the connection on a message over 1 GB, and a write
// goes out as one message: its values, with room to spare for the rest of it.
// (Batches stay far below: Connection bounds them by bytes.)
constexpr size_t kMaxWriteBytes = (size_t{1} << 30) - (size_t{1} << 20);

// --- argument checks: the facade validates with friendly messages; these are
// the native backstop, so misuse throws instead of crashing.

bool IsNullish(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

std::string Utf8(const Napi::Value& v) { return v.As<Napi::String>().Utf8Value(); }

Napi::Value Get(const Napi::Object& o, const char* key) { return o.Get(key); }

// Absolute Unix seconds from JS (null: the default lifetime) as a parameter.
bool BindExpires(Statement& s, const Napi::Value& v) {
  if (IsNullish(v)) {
    s.BindNull();
    return true;
  }
  if (!v.IsNumber()) return false;
  double seconds = v.As<Napi::Number>().DoubleValue();
  if (!(seconds >= 0 && seconds <= kMaxExpires)) return false;  // also NaN; llround stays defined
  s.Bind(std::to_string(std::llround(seconds)));
  return true;
}

}  // namespace

Napi::Function Handler::Define(Napi::Env env) {
  return DefineClass(env, "Handler",
                     {
                         InstanceMethod("open", &Handler::JsOpen),
                         InstanceMethod("read", &Handler::JsRead),
                         InstanceMethod("write", &Handler::JsWrite),
                         InstanceMethod("touch", &Handler::JsTouch),
                         InstanceMethod("destroy", &Handler::JsDestroy),
                         InstanceMethod("message", &Handler::JsMessage),
                         InstanceMethod("gc", &Handler::JsGc),
                         InstanceMethod("vacuum", &Handler::JsVacuum),
                         InstanceMethod("stats", &Handler::JsStats),
                         InstanceMethod("list", &Handler::JsList),
                         InstanceMethod("clear", &Handler::JsClear),
                         InstanceMethod("onEvent", &Handler::JsOnEvent),
                         InstanceMethod("status", &Handler::JsStatus),
                         InstanceMethod("order", &Handler::JsOrder),
                         InstanceMethod("reset", &Handler::JsReset),
                         InstanceMethod("close", &Handler::JsClose),
                     });
}

Handler::Handler(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<Handler>(info), addon_(info.Env().GetInstanceData<Addon>()) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsObject() || !info[1].IsFunction() || !info[2].IsFunction()) {
    Napi::TypeError::New(env,
                         "new Handler(config: object, errorClass: Function, makeRow: Function)")
        .ThrowAsJavaScriptException();
    return;
  }
  error_class_ = Napi::Persistent(info[1].As<Napi::Function>());
  make_row_ = Napi::Persistent(info[2].As<Napi::Function>());
  Napi::Object config = info[0].As<Napi::Object>();

  auto fail = [&](const std::string& message) {
    Napi::Value e = ToJs(env, error_class_, MakeError(code::kInvalidOption, message));
    Napi::Error(env, e).ThrowAsJavaScriptException();
  };
  auto string = [&](const char* key, std::string* out) {
    Napi::Value v = Get(config, key);
    if (!v.IsString()) return fail(std::string("config.") + key + " must be a string"), false;
    *out = Utf8(v);
    return true;
  };
  auto number = [&](const char* key, double* out) {
    Napi::Value v = Get(config, key);
    if (!v.IsNumber()) return fail(std::string("config.") + key + " must be a number"), false;
    *out = v.As<Napi::Number>().DoubleValue();
    return true;
  };
  auto boolean = [&](const char* key, bool* out) {
    Napi::Value v = Get(config, key);
    if (!v.IsBoolean()) return fail(std::string("config.") + key + " must be a boolean"), false;
    *out = v.As<Napi::Boolean>().Value();
    return true;
  };

  std::string index, pooler;
  double max_lifetime = 0, max_data_size = 0, gc_interval = 0, vacuum_interval = 0, max_batch = 1,
         connections = 1;
  ServerTimings timings;
  if (!string("table", &table_) || !string("index", &index) ||
      !string("housekeeping", &housekeeping_) || !string("sessionName", &session_name_) ||
      !string("placement", &placement_name_) || !boolean("createTable", &create_table_) ||
      !boolean("shortCircuit", &short_circuit_) || !boolean("keepExpired", &keep_expired_) ||
      !boolean("failoverMode", &failover_mode_) ||
      !boolean("synchronousCommit", &timings.synchronous_commit) ||
      !string("pooler", &pooler) ||
      !number("maxLifetime", &max_lifetime) || !number("maxDataSize", &max_data_size) ||
      !number("gcInterval", &gc_interval) || !number("vacuumInterval", &vacuum_interval) ||
      !number("maxBatch", &max_batch) || !number("connections", &connections) ||
      !number("connectTimeout", &timings.connect_timeout_ms) ||
      !number("statementTimeout", &timings.statement_timeout_ms) ||
      !number("retryMin", &timings.retry_min_ms) || !number("retryMax", &timings.retry_max_ms)) {
    return;
  }
  if (pooler != "none" && pooler != "transaction") {
    fail("config.pooler must be 'none' or 'transaction'");
    return;
  }
  // The facade checks each with its own message; this backstop keeps the casts
  // below (to whole ms and seconds, and libuv's uint64 ms) defined.
  for (double d : {timings.connect_timeout_ms, timings.statement_timeout_ms, timings.retry_min_ms,
                   timings.retry_max_ms, gc_interval, vacuum_interval}) {
    if (!(d >= 0 && d <= 2147483.647)) {
      fail("config durations must be 0 to 2147483.647 s");
      return;
    }
  }
  if (!(max_lifetime > 0 && max_lifetime <= kMaxLifetime)) {
    fail("config.maxLifetime must be above 0 and at most 2147483647");
    return;
  }
  timings.unnamed = pooler == "transaction";
  // Durations arrive in seconds, like every duration of the public API.
  for (double* ms : {&timings.connect_timeout_ms, &timings.statement_timeout_ms,
                     &timings.retry_min_ms, &timings.retry_max_ms}) {
    *ms *= 1000;
  }
  // The table counts whole seconds; a fraction rounds up so no session is born expired.
  max_lifetime_ = static_cast<long long>(std::ceil(max_lifetime));
  timings.max_batch = max_batch < 1 ? 1 : static_cast<size_t>(max_batch);
  timings.connections = connections < 1 ? 1 : static_cast<size_t>(connections);
  max_data_size_ = static_cast<size_t>(max_data_size);

  Napi::Value list = Get(config, "servers");
  if (!list.IsArray() || list.As<Napi::Array>().Length() == 0) {
    fail("config.servers must be a non-empty array of strings");
    return;
  }
  Napi::Array entries = list.As<Napi::Array>();
  std::vector<std::string> identities, plain_identities;
  for (uint32_t i = 0; i < entries.Length(); ++i) {
    Napi::Value entry = entries.Get(i);
    if (!entry.IsString()) {
      fail("config.servers[" + std::to_string(i) + "] must be a string");
      return;
    }
    ServerSpec spec;
    std::string error;
    if (!ParseServerSpec(Utf8(entry), &spec, &error)) {
      fail("db entry " + std::to_string(i) + ": " + error);
      return;
    }
    // why: the same server listed twice still needs two distinct identities.
    int twins = 0;
    for (const std::string& seen : plain_identities) twins += seen == spec.identity;
    plain_identities.push_back(spec.identity);
    if (twins > 0) spec.identity += "#" + std::to_string(twins);
    identities.push_back(spec.identity);
    servers_.push_back(std::make_unique<Server>(addon_, this, static_cast<int>(i), std::move(spec),
                                                timings, gc_interval, vacuum_interval));
  }

  Placement::Mode mode = failover_mode_             ? Placement::Mode::kFailover
                         : placement_name_ == "php" ? Placement::Mode::kPhp
                                                    : Placement::Mode::kRendezvous;
  placement_ = std::make_unique<Placement>(mode, identities);

  SqlOptions sql_options;
  sql_options.table = table_;
  sql_options.index = index;
  sql_options.housekeeping = housekeeping_;
  sql_options.max_lifetime = max_lifetime_;
  sql_options.keep_expired = keep_expired_;
  sql_ = std::make_unique<Sql>(sql_options);
  sql_options.versioned = false;
  unversioned_sql_ = std::make_unique<Sql>(sql_options);
  write_many_.build = WriteMany;
  write_many_.distinct_keys = true;
  read_many_.build = ReadMany;
  addon_->Register(this);
}

Handler::~Handler() {
  servers_.clear();
  addon_->Unregister(this);
}

void Handler::Abandon() {
  abandoned_ = true;
  for (auto& server : servers_) server->Close();
}

void Handler::EnsureStarted() {
  if (started_) return;
  started_ = true;
  Ref();  // pinned until close() has drained, so callbacks never outlive us
  for (auto& server : servers_) server->Start();
}

Server* Handler::Route(const std::string& id, ErrorInfo* error) {
  placement_->Order(id, &order_);
  for (int i : order_) {
    if (servers_[i]->routable()) return servers_[i].get();
  }
  const Server& home = *servers_[order_.front()];
  std::string message = servers_.size() == 1 ? "the server is down" : "every server is down";
  if (home.last_error()) message += " (" + home.last_error().message + ")";
  *error = MakeError(code::kNoServer, message, -1, true);
  return nullptr;
}

void Handler::Resend(OpPtr op, const ErrorInfo& error) {
  if (!op->read_only && !op->key.empty() && op->server >= 0) GaveUp(op->key, op->server);
  if (op->reroutable && op->attempts == 0 && !closing()) {
    ++op->attempts;
    ErrorInfo ignored;
    if (Server* next = Route(op->key, &ignored)) {
      op->error = {};
      next->Submit(std::move(op));  // already counted in in_flight_
      return;
    }
  }
  op->error = error;
  if (op->done) op->done(*op);
}

void Handler::GaveUp(const std::string& id, int server) {
  const double now = NowSeconds();
  const uint64_t bit = server < 64 ? uint64_t{1} << server : ~uint64_t{0};
  auto [at, fresh] = gave_up_.try_emplace(id, GaveUpOn{0, now});
  if (!fresh && now - at->second.at >= static_cast<double>(max_lifetime_)) at->second.servers = 0;
  at->second.servers |= bit;
  at->second.at = now;
  if (gave_up_.size() < prune_gave_up_at_) return;
  for (auto it = gave_up_.begin(); it != gave_up_.end();) {
    it = now - it->second.at >= static_cast<double>(max_lifetime_) ? gave_up_.erase(it)
                                                                      : std::next(it);
  }
  prune_gave_up_at_ = std::max<size_t>(1024, 2 * gave_up_.size());
}

bool Handler::MayRunLate(const std::string& id, int server) const {
  auto it = gave_up_.find(id);
  if (it == gave_up_.end()) return false;
  if (NowSeconds() - it->second.at >= static_cast<double>(max_lifetime_)) return false;
  return (it->second.servers & (server < 64 ? uint64_t{1} << server : ~uint64_t{0})) != 0;
}

void Handler::Submit(Server* server, OpPtr op) {
  ++in_flight_;
  auto inner = std::move(op->done);
  op->done = [this, inner = std::move(inner)](Op& settled) {
    inner(settled);
    OpSettled();
  };
  server->Submit(std::move(op));
}

void Handler::OpSettled() {
  --in_flight_;
  if (closing_ && !closed_ && in_flight_ == 0) FinishClose();
}

void Handler::FinishClose() {
  closed_ = true;
  for (auto& server : servers_) server->Close();
  std::vector<Deferred> waiters = std::move(close_waiters_);
  for (auto& waiter : waiters) waiter.Resolve(waiter.Env().Undefined());
  if (started_) Unref();
}

Napi::Value Handler::Reject(Napi::Env env, const ErrorInfo& error) {
  auto deferred = Deferred::New(env);
  deferred.Reject(ToJs(env, error_class_, error));
  return deferred.Promise();
}

Napi::Value Handler::Reject(Napi::Env env, const char* code, const std::string& message) {
  return Reject(env, MakeError(code, message));
}

// An outage, like SPG_NO_SERVER from a session operation: retryable.
Napi::Value Handler::NoServerUp(Napi::Env env) {
  return Reject(env, MakeError(code::kNoServer, "no server is up", -1, true));
}

Napi::Value Handler::ClosedError(Napi::Env env) {
  return Reject(env, code::kClosed, "the handler is closed");
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
      deferred.Reject(ToJs(deferred.Env(), error_class_, error));
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

Napi::Value Handler::JsClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto deferred = Deferred::New(env);
  if (closed_ || abandoned_) {
    deferred.Resolve(env.Undefined());
    return deferred.Promise();
  }
  closing_ = true;
  close_waiters_.push_back(deferred);
  for (auto& server : servers_) server->housekeeping().Cancel();
  if (in_flight_ == 0) FinishClose();
  return deferred.Promise();
}

Napi::Value Handler::JsRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    return Reject(env, code::kInvalidArgument, "read(id: string)");
  }
  if (closing()) return ClosedError(env);
  EnsureStarted();
  std::string id = Utf8(info[0]);
  ErrorInfo error;
  Server* server = Route(id, &error);
  if (server == nullptr) return Reject(env, error);
  auto deferred = Deferred::New(env);
  ReadAt(server, std::move(id), deferred);
  return deferred.Promise();
}

Napi::Object Handler::BuildRow(Napi::Env env, const PGresult* r, int i, int server) {
  const bool found = Found(r, i);
  const bool expired = found && PQgetvalue(r, i, 11)[0] == 't';
  // An expired row is a new session unless keepExpired keeps its metadata.
  const bool load = found && (!expired || keep_expired_);
  // Cells go straight from libpq's buffer into JS strings; null reads as "".
  auto text = [&](int col, bool shown) {
    if (!shown || PQgetisnull(r, i, col)) return Napi::String::New(env, "", 0);
    return Napi::String::New(env, PQgetvalue(r, i, col), PQgetlength(r, i, col));
  };
  auto number = [&](int col, long long otherwise, long long plus = 0) {
    return Napi::Number::New(env,
                             static_cast<double>(load ? ParseInt(r, i, col) + plus : otherwise));
  };
  const napi_value values[] = {
      Napi::Number::New(env, server),
      Napi::String::New(env, !found    ? "new"
                             : expired ? "expired"
                                       : "existing"),
      Napi::Boolean::New(env, !load),  // the next write stores a fresh row
      text(0, load && !expired),
      number(1, 1, 1),  // accesses: the stored counter + 1 (this access)
      number(2, 0),
      number(3, 0),
      number(4, 0),
      text(5, load),
      number(6, 0),
      number(7, 0),
      number(8, 0),
      text(9, load),
      text(10, load),
  };
  // why: the facade's makeRow builds the object as a literal, a fraction of
  // the cost of setting its 14 properties one by one through Node-API.
  Napi::Value row = make_row_.Call(env.Undefined(), std::size(values), values);
  return row.IsObject() ? row.As<Napi::Object>() : Napi::Object::New(env);
}

bool Handler::Recovering(const Server* home) const {
  return servers_.size() > 1 && home->recovered_at() > 0 &&
         NowSeconds() - home->recovered_at() < static_cast<double>(max_lifetime_);
}

std::vector<Server*> Handler::Fallbacks(const std::string& id, const Server* home) {
  placement_->Order(id, &order_);
  std::vector<Server*> after;
  bool past_home = false;
  for (int i : order_) {
    if (past_home && servers_[i]->routable()) after.push_back(servers_[i].get());
    past_home = past_home || i == home->index();
  }
  return after;
}

void Handler::ReadAt(Server* server, std::string id, Deferred deferred) {
  auto op = std::make_unique<Op>();
  op->statements.push_back(Statement::Prepared(kReadStmt).Bind(id));
  op->key = std::move(id);
  op->reroutable = true;
  op->read_only = true;
  op->merge = &read_many_;
  op->done = [this, deferred](Op& op) {
    // why: a merged read's result has a row per id; a missing one must not
    // read as a new session, whose write would replace the stored one.
    if (!op.error && op.row >= std::max(1, PQntuples(op.results[0].get()))) {
      op.error = MakeError(code::kProtocol, "a merged read returned too few rows", op.server, true);
    }
    if (op.error) {
      deferred.Reject(ToJs(deferred.Env(), error_class_, op.error));
      return;
    }
    ObserveVersion(op.results[0].get(), op.row, 12);
    Server* home = servers_[op.server].get();
    // Sessions written elsewhere while this server was down live on the servers
    // after it in the id's order until they expire: while that can be, look
    // there too and keep the newest copy.
    if (Recovering(home)) {
      std::vector<Server*> fallbacks = Fallbacks(op.key, home);
      if (!fallbacks.empty()) {
        LookAside(home, op.key, deferred, op.results[0], op.row, std::move(fallbacks), 0);
        return;
      }
    }
    deferred.Resolve(BuildRow(deferred.Env(), op.results[0].get(), op.row, op.server));
  };
  Submit(server, std::move(op));
}

void Handler::LookAside(Server* home, std::string id, Deferred deferred, ResultPtr at_home,
                        int home_row, std::vector<Server*> fallbacks, size_t next) {
  if (next == fallbacks.size()) {
    deferred.Resolve(BuildRow(deferred.Env(), at_home.get(), home_row, home->index()));
    return;
  }
  Server* other = fallbacks[next];
  auto fetch = std::make_unique<Op>();
  fetch->statements.push_back(Statement::Prepared(kFetchStmt).Bind(id));
  fetch->done = [this, home, other, id, deferred, at_home, home_row, fallbacks, next](Op& op) {
    const PGresult* r = op.error ? nullptr : op.results[0].get();
    if (r == nullptr || PQntuples(r) == 0) {  // not there (or unreachable): try the next
      LookAside(home, id, deferred, at_home, home_row, fallbacks, next + 1);
      return;
    }
    ObserveVersion(r, 0, 13);
    // The newer of the two rows wins: by version (column 13 of the fetch, 12
    // of the read) when both have one, whether live, expired or a tombstone,
    // and an equal version is the same write. Otherwise (a row PHP wrote, or
    // one from before versions) by sess_modified (columns 3 and 7): a live
    // copy written during the outage is never older than home's, so a tie
    // goes to it.
    const PGresult* h = at_home.get();
    const bool home_found = Found(h, home_row);
    const bool home_live = home_found && PQgetvalue(h, home_row, 11)[0] != 't';
    const bool versioned = home_found && !PQgetisnull(h, home_row, 12) && !PQgetisnull(r, 0, 13);
    const bool home_newer = versioned ? ParseInt(h, home_row, 12) >= ParseInt(r, 0, 13)
                                      : home_live && ParseInt(h, home_row, 7) > ParseInt(r, 0, 3);
    if (home_newer) {
      DropCopies(id, {other}, [] {});  // a stale copy: home was written since
      LookAside(home, id, deferred, at_home, home_row, fallbacks, next + 1);
      return;
    }
    // Store the row at home and read it back in the same transaction, then
    // drop the copy.
    auto adopt = std::make_unique<Op>();
    Statement insert = Statement::Prepared(kAdoptStmt);
    insert.Bind(id);
    for (int col = 0; col < 14; ++col) {
      if (PQgetisnull(r, 0, col)) {
        insert.BindNull();
      } else {
        insert.Bind(Text(r, 0, col));
      }
    }
    adopt->statements.push_back(std::move(insert));
    adopt->statements.push_back(Statement::Prepared(kReadStmt).Bind(id));
    adopt->done = [this, other, id, deferred](Op& op) {
      if (op.error) {
        deferred.Reject(ToJs(deferred.Env(), error_class_, op.error));
        return;
      }
      ResultPtr row = op.results[1];
      const int server = op.server;
      DropCopies(id, {other}, [this, deferred, row, server] {
        deferred.Resolve(BuildRow(deferred.Env(), row.get(), 0, server));
      });
    };
    Submit(home, std::move(adopt));
  };
  Submit(other, std::move(fetch));
}

void Handler::DropCopies(const std::string& id, const std::vector<Server*>& servers,
                         std::function<void()> then) {
  auto remaining = std::make_shared<size_t>(servers.size() + 1);
  auto step = [remaining, then] {
    if (--*remaining == 0) then();
  };
  for (Server* server : servers) {
    auto drop = std::make_unique<Op>();
    drop->statements.push_back(Statement::Prepared(kDestroyStmt).Bind(id));
    drop->batchable = true;
    drop->done = [step](Op&) { step(); };
    Submit(server, std::move(drop));
  }
  step();
}

// write(id, data, address, expires, custom, dErrors, dWarnings, dNotices, message, baseline)
Napi::Value Handler::JsWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 10 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString() ||
      !(IsNullish(info[4]) || info[4].IsString()) || !info[5].IsNumber() || !info[6].IsNumber() ||
      !info[7].IsNumber() || !(IsNullish(info[8]) || info[8].IsString()) ||
      !(IsNullish(info[9]) || info[9].IsString())) {
    return Reject(env, code::kInvalidArgument,
                  "write(id, data, address, expires, custom, errors, warnings, notices, "
                  "message, baseline)");
  }
  if (closing()) return ClosedError(env);

  // The data is checked before anything else happens: too large or holding a
  // NUL byte (which a text column cannot store) means nothing is sent.
  size_t length = 0;
  napi_get_value_string_utf8(env, info[1], nullptr, 0, &length);
  if (length > max_data_size_) {
    return Reject(env, code::kDataTooLarge,
                  "session data is " + std::to_string(length) + " bytes, over maxDataSize (" +
                      std::to_string(max_data_size_) + ")");
  }
  auto too_large = [&](const std::string& what, size_t bytes) {
    return Reject(env, code::kDataTooLarge,
                  what + " " + std::to_string(bytes) + " bytes, over the " +
                      std::to_string(kMaxWriteBytes) +
                      " that one write can carry (PostgreSQL takes at most 1 GB in one message)");
  };
  if (length > kMaxWriteBytes) return too_large("session data is", length);
  std::string data(length, '\0');
  napi_get_value_string_utf8(env, info[1], data.data(), length + 1, &length);
  if (const void* nul = std::memchr(data.data(), 0, data.size())) {
    return Reject(env, code::kDataHasNul,
                  "session data contains a NUL byte at offset " +
                      std::to_string(static_cast<const char*>(nul) - data.data()) +
                      "; encode binary data (e.g. base64) before storing it");
  }

  const int errors = info[5].As<Napi::Number>().Int32Value();
  const int warnings = info[6].As<Napi::Number>().Int32Value();
  const int notices = info[7].As<Napi::Number>().Int32Value();
  const bool forced =
      !IsNullish(info[4]) || !IsNullish(info[8]) || errors != 0 || warnings != 0 || notices != 0;
  // Short circuit: a session read live whose data is byte-equal and on which
  // nothing was forced is not written at all (its expiry is not refreshed).
  if (short_circuit_ && !forced && info[9].IsString() && Utf8(info[9]) == data) {
    auto deferred = Deferred::New(env);
    deferred.Resolve(Napi::Boolean::New(env, false));
    return deferred.Promise();
  }

  // libpq sends text parameters as C strings: a NUL would silently cut them.
  std::string id = Utf8(info[0]);
  std::string address = Utf8(info[2]);
  std::string custom = IsNullish(info[4]) ? std::string() : Utf8(info[4]);
  std::string message = IsNullish(info[8]) ? std::string() : Utf8(info[8]);
  for (const auto& [name, value] : {std::pair<const char*, const std::string*>{"session id", &id},
                                    {"address", &address},
                                    {"custom field", &custom},
                                    {"error message", &message}}) {
    if (value->find('\0') != std::string::npos) {
      return Reject(env, code::kDataHasNul, std::string("the ") + name + " contains a NUL byte");
    }
  }

  const size_t total = id.size() + session_name_.size() + data.size() + address.size() +
                       custom.size() + message.size();
  if (total > kMaxWriteBytes) return too_large("session data and fields are", total);

  EnsureStarted();
  ErrorInfo error;
  Server* server = Route(id, &error);
  if (server == nullptr) return Reject(env, error);

  Statement s = Statement::Prepared(kWriteStmt);
  s.Bind(id).Bind(session_name_).Bind(std::move(data));
  if (address.empty()) {
    s.BindNull();  // unknown: an update keeps the stored address
  } else {
    s.Bind(std::move(address));
  }
  if (!BindExpires(s, info[3])) {
    return Reject(env, code::kInvalidArgument, "expires must be Unix seconds from 0 to 8.64e12");
  }
  if (IsNullish(info[4])) {
    s.BindNull();
  } else {
    s.Bind(std::move(custom));
  }
  s.Bind(std::to_string(errors)).Bind(std::to_string(warnings)).Bind(std::to_string(notices));
  if (IsNullish(info[8])) {
    s.BindNull();
  } else {
    s.Bind(std::move(message));
  }
  // Issued now: a resend carries the same version, being the same write.
  s.Bind(std::to_string(NextVersion()));

  auto deferred = Deferred::New(env);
  auto op = std::make_unique<Op>();
  op->statements.push_back(std::move(s));
  // why: the write carries the whole new state, so resending it after a lost
  // connection stores the same row (at worst the counter counts it twice).
  op->key = std::move(id);
  op->reroutable = true;
  op->batchable = true;
  if (op->statements[0].is_null[5]) op->merge = &write_many_;
  op->done = [this, deferred](Op& op) {
    if (op.error) {
      deferred.Reject(ToJs(deferred.Env(), error_class_, op.error));
      return;
    }
    auto stored = [deferred] { deferred.Resolve(Napi::Boolean::New(deferred.Env(), true)); };
    Server* home = servers_[op.server].get();
    // While copies written during an outage may exist, a write at home makes
    // them stale: they go before the write is reported, so none can return.
    if (Recovering(home)) {
      DropCopies(op.key, Fallbacks(op.key, home), stored);
    } else {
      stored();
    }
  };
  Submit(server, std::move(op));
  return deferred.Promise();
}

Napi::Value Handler::JsTouch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    return Reject(env, code::kInvalidArgument, "touch(id: string, expires?: number)");
  }
  if (closing()) return ClosedError(env);
  EnsureStarted();
  std::string id = Utf8(info[0]);
  ErrorInfo error;
  Server* server = Route(id, &error);
  if (server == nullptr) return Reject(env, error);
  Statement s = Statement::Prepared(kTouchStmt);
  s.Bind(id);
  if (!BindExpires(s, info.Length() > 1 ? info[1] : env.Undefined())) {
    return Reject(env, code::kInvalidArgument, "expires must be Unix seconds from 0 to 8.64e12");
  }
  auto deferred = Deferred::New(env);
  auto op = std::make_unique<Op>();
  op->statements.push_back(std::move(s));
  op->key = std::move(id);
  op->reroutable = true;
  op->batchable = true;
  op->done = [this, deferred](Op& op) {
    if (op.error) {
      deferred.Reject(ToJs(deferred.Env(), error_class_, op.error));
    } else {
      deferred.Resolve(Napi::Boolean::New(deferred.Env(), AffectedRows(op.results[0].get()) > 0));
    }
  };
  Submit(server, std::move(op));
  return deferred.Promise();
}

Napi::Value Handler::JsDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    return Reject(env, code::kInvalidArgument, "destroy(id: string)");
  }
  if (closing()) return ClosedError(env);
  EnsureStarted();
  std::string id = Utf8(info[0]);
  ErrorInfo error;
  Server* home = Route(id, &error);
  if (home == nullptr) return Reject(env, error);
  // A session may live on a fallback server (written there during an outage),
  // so it is deleted from every server that is up; the home server decides the
  // outcome, the others are best effort. When the id's own home is down, the
  // server standing in for it keeps a tombstone instead, so the row the home
  // still has cannot come back when it returns. So does a server where this
  // process gave up on a write of the session lately: that write may still
  // run there late (a stalled connection, a healed partition), and with no
  // row to lose to it would store the session again.
  placement_->Order(id, &order_);
  const bool home_down = servers_[order_.front()].get() != home;
  std::vector<Server*> targets;
  for (auto& server : servers_) {
    if (server.get() == home || server->routable()) targets.push_back(server.get());
  }
  auto removed = std::make_shared<bool>(false);
  auto join = NewJoin(env, targets.size(),
                      [removed](Napi::Env env) { return Napi::Boolean::New(env, *removed); });
  const std::string version = std::to_string(NextVersion());
  for (Server* server : targets) {
    auto op = std::make_unique<Op>();
    const bool is_home = server == home;
    if ((is_home && home_down) || MayRunLate(id, server->index())) {
      op->statements.push_back(Statement::Prepared(kTombstoneStmt).Bind(id).Bind(version));
    } else {
      op->statements.push_back(Statement::Prepared(kDestroyStmt).Bind(id));
    }
    op->key = id;
    op->reroutable = is_home;
    op->batchable = true;
    op->done = [this, join, removed, is_home](Op& op) {
      if (!op.error && AffectedRows(op.results[0].get()) > 0) *removed = true;
      StepDone(join, is_home ? op.error : ErrorInfo{});
    };
    Submit(server, std::move(op));
  }
  return join->deferred.Promise();
}

Napi::Value Handler::JsMessage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    return Reject(env, code::kInvalidArgument, "message(id: string)");
  }
  if (closing()) return ClosedError(env);
  EnsureStarted();
  std::string id = Utf8(info[0]);
  ErrorInfo error;
  Server* server = Route(id, &error);
  if (server == nullptr) return Reject(env, error);
  auto deferred = Deferred::New(env);
  auto op = std::make_unique<Op>();
  op->statements.push_back(Statement::Prepared(kMessageStmt).Bind(id));
  op->key = std::move(id);
  op->reroutable = true;
  op->read_only = true;
  op->done = [this, deferred](Op& op) {
    if (op.error) {
      deferred.Reject(ToJs(deferred.Env(), error_class_, op.error));
      return;
    }
    const PGresult* r = op.results[0].get();
    deferred.Resolve(
        Napi::String::New(deferred.Env(), PQntuples(r) > 0 ? Text(r, 0, 0) : std::string()));
  };
  Submit(server, std::move(op));
  return deferred.Promise();
}

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
    join->deferred.Reject(ToJs(env, error_class_, join->error));
  } else {
    join->deferred.Resolve(join->result(env));
  }
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
        entry.Set("error", ToJs(env, error_class_, op.error));
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

Napi::Value Handler::JsOnEvent(const Napi::CallbackInfo& info) {
  if (info.Length() > 0 && info[0].IsFunction()) {
    events_ = Napi::Persistent(info[0].As<Napi::Function>());
  }
  return info.Env().Undefined();
}

void Handler::ServerChanged(int server, bool up) {
  if (events_.IsEmpty() || abandoned_ || closing_) return;
  Napi::Env env = events_.Env();
  events_.Call({Napi::String::New(env, up ? "up" : "down"), Napi::Number::New(env, server)});
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

void Handler::Warn(const ErrorInfo& error) {
  if (events_.IsEmpty() || abandoned_) return;
  Napi::Env env = events_.Env();
  events_.Call({Napi::String::New(env, "warning"), ToJs(env, error_class_, error)});
}

Napi::Value Handler::JsOrder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    Napi::TypeError::New(env, "order(id: string)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::vector<int> order;
  placement_->Order(Utf8(info[0]), &order);
  Napi::Array out = Napi::Array::New(env, order.size());
  for (size_t i = 0; i < order.size(); ++i) out.Set(static_cast<uint32_t>(i), order[i]);
  return out;
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
  out.Set("failoverMode", failover_mode_);
  out.Set("shortCircuit", short_circuit_);
  out.Set("keepExpired", keep_expired_);
  out.Set("maxLifetime", static_cast<double>(max_lifetime_));
  out.Set("placement", failover_mode_ ? std::string("failover") : placement_name_);
  out.Set("table", table_);
  out.Set("inFlight", static_cast<double>(in_flight_));
  out.Set("closed", closed_ || closing_);
  return out;
}

}  // namespace spg
