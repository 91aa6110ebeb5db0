// The JS binding of Handler: argument reading, the single-session operations
// (read, write, touch, destroy, message), routing and the promise plumbing
// that close() waits on. Outage recovery is in recovery.cc, operations across
// every server in fanout.cc.
#include "handler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>

#include "results.h"
#include "versions.h"

namespace spg {

namespace {

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

// kWriteManyStmt from single writes (each bound from WriteParams, its custom
// field null): the name once, then one array per entry of kWriteManyArrays.
Statement WriteMany(const std::vector<const Statement*>& writes) {
  Statement many = Statement::Prepared(kWriteManyStmt);
  many.Bind(writes.front()->params[kWriteName]);
  for (WriteParam param : kWriteManyArrays) many.Bind(ArrayOf(writes, param));
  return many;
}

// kWriteStmt with `params`.
Statement WriteOne(WriteParams params) {
  Statement s = Statement::Prepared(kWriteStmt);
  for (std::optional<std::string>& value : std::move(params).Values()) {
    if (value) {
      s.Bind(std::move(*value));
    } else {
      s.BindNull();
    }
  }
  return s;
}

// kReadManyStmt from single reads (kReadStmt: $1 id): one array of the ids.
Statement ReadMany(const std::vector<const Statement*>& reads) {
  Statement many = Statement::Prepared(kReadManyStmt);
  many.Bind(ArrayOf(reads, 0));
  return many;
}

// --- argument checks: the facade validates with friendly messages; these are
// the native backstop, so misuse throws instead of crashing.

bool IsNullish(const Napi::Value& v) { return v.IsNull() || v.IsUndefined(); }

std::string Utf8(const Napi::Value& v) { return v.As<Napi::String>().Utf8Value(); }

Napi::Value Get(const Napi::Object& o, const char* key) { return o.Get(key); }

// Absolute Unix seconds from JS (null: the default lifetime). The range is
// the facade's rule (checkExpires, with its message); this guard keeps llround
// defined. False when `v` is out of it.
bool ReadExpires(const Napi::Value& v, std::optional<long long>* out) {
  if (IsNullish(v)) {
    out->reset();
    return true;
  }
  if (!v.IsNumber()) return false;
  double seconds = v.As<Napi::Number>().DoubleValue();
  if (!(seconds >= 0 && seconds <= kMaxExpires)) return false;  // also NaN
  *out = std::llround(seconds);
  return true;
}

constexpr const char* kExpiresGuard = "expires out of range (the facade checks it first)";

}  // namespace

Napi::Function Handler::Define(Napi::Env env, Environment* environment) {
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
                     },
                     environment);
}

Handler::Handler(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<Handler>(info), environment_(static_cast<Environment*>(info.Data())) {
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
      !boolean("keepExpired", &keep_expired_) ||
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
  // Guards, not rules: lib/options.ts checks every option with a message that
  // names it (and its range) before this runs. These keep the casts below (to
  // whole ms and seconds, libuv's uint64 ms) defined and GC's SQL right.
  if (pooler != "none" && pooler != "transaction") {
    fail("config.pooler must be 'none' or 'transaction'");
    return;
  }
  if (placement_name_ != "rendezvous" && placement_name_ != "php" &&
      placement_name_ != "failover") {
    fail("config.placement must be 'rendezvous', 'php' or 'failover'");
    return;
  }
  for (double d : {timings.connect_timeout_ms, timings.statement_timeout_ms, timings.retry_min_ms,
                   timings.retry_max_ms, gc_interval, vacuum_interval}) {
    if (!(d >= 0 && d <= kMaxTimerSeconds)) {
      fail("config durations out of range (options.ts checks them first)");
      return;
    }
  }
  if (!(max_lifetime > 0 && max_lifetime <= kMaxLifetime)) {
    fail("config.maxLifetime out of range (options.ts checks it first)");
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

  SqlOptions sql_options;
  sql_options.table = table_;
  sql_options.index = index;
  sql_options.housekeeping = housekeeping_;
  sql_options.max_lifetime = max_lifetime_;
  sql_options.keep_expired = keep_expired_;
  sql_ = std::make_unique<Sql>(sql_options);
  sql_options.versioned = false;
  unversioned_sql_ = std::make_unique<Sql>(sql_options);
  // What every server is told; each adds its own index and entry.
  ServerConfig server_config;
  server_config.timings = timings;
  server_config.sql = sql_.get();
  server_config.unversioned_sql = unversioned_sql_.get();
  server_config.table = table_;
  server_config.housekeeping = housekeeping_;
  server_config.create_table = create_table_;
  // Seconds an expired row is kept before GC removes it (keepExpired: one lifetime).
  server_config.gc_grace = keep_expired_ ? max_lifetime_ : 0;
  server_config.gc_interval = gc_interval;
  server_config.vacuum_interval = vacuum_interval;

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
      // A guard: options.ts refuses an unparsable entry, naming what is wrong.
      fail("config.servers[" + std::to_string(i) + "] is not a conninfo (options.ts checks it)");
      return;
    }
    // why: the same server listed twice still needs two distinct identities.
    int twins = 0;
    for (const std::string& seen : plain_identities) twins += seen == spec.identity;
    plain_identities.push_back(spec.identity);
    if (twins > 0) spec.identity += "#" + std::to_string(twins);
    identities.push_back(spec.identity);
    server_config.index = static_cast<int>(i);
    server_config.spec = std::move(spec);
    servers_.push_back(std::make_unique<Server>(environment_, this, server_config));
  }

  Placement::Mode mode = placement_name_ == "failover" ? Placement::Mode::kFailover
                         : placement_name_ == "php"    ? Placement::Mode::kPhp
                                                       : Placement::Mode::kRendezvous;
  placement_ = std::make_unique<Placement>(mode, identities);

  write_many_.build = WriteMany;
  write_many_.distinct_keys = true;
  read_many_.build = ReadMany;
  environment_->Register(this);
}

Handler::~Handler() {
  servers_.clear();
  environment_->Unregister(this);
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
  const bool expired = found && PQgetvalue(r, i, kReadExpired)[0] == 't';
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
      text(kReadData, load && !expired),
      number(kReadCounter, 1, 1),  // accesses: the stored counter + 1 (this access)
      number(kReadError, 0),
      number(kReadWarning, 0),
      number(kReadNotice, 0),
      text(kReadCustom, load),
      number(kReadCreated, 0),
      number(kReadModified, 0),
      number(kReadExpire, 0),
      text(kReadAddrCreated, load),
      text(kReadAddrModified, load),
  };
  // why: the facade's makeRow builds the object as a literal, a fraction of
  // the cost of setting its 14 properties one by one through Node-API.
  Napi::Value row = make_row_.Call(env.Undefined(), std::size(values), values);
  return row.IsObject() ? row.As<Napi::Object>() : Napi::Object::New(env);
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
    ObserveVersion(op.results[0].get(), op.row, kReadVersion);
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

// write(id, data, address, expires, custom, dErrors, dWarnings, dNotices, message).
// The facade has checked the id, the address (no NUL), expires' range, and
// decided the short circuit; the bytes (size, NUL) are checked here, where the
// strings are copied anyway.
Napi::Value Handler::JsWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 9 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString() ||
      !(IsNullish(info[4]) || info[4].IsString()) || !info[5].IsNumber() || !info[6].IsNumber() ||
      !info[7].IsNumber() || !(IsNullish(info[8]) || info[8].IsString())) {
    return Reject(env, code::kInvalidArgument,
                  "write(id, data, address, expires, custom, errors, warnings, notices, message)");
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
  std::string data(length, '\0');
  napi_get_value_string_utf8(env, info[1], data.data(), length + 1, &length);
  if (const void* nul = std::memchr(data.data(), 0, data.size())) {
    return Reject(env, code::kDataHasNul,
                  "session data contains a NUL byte at offset " +
                      std::to_string(static_cast<const char*>(nul) - data.data()) +
                      "; encode binary data (e.g. base64) before storing it");
  }

  WriteParams w;
  w.id = Utf8(info[0]);
  w.name = session_name_;
  w.data = std::move(data);
  w.errors = info[5].As<Napi::Number>().Int32Value();
  w.warnings = info[6].As<Napi::Number>().Int32Value();
  w.notices = info[7].As<Napi::Number>().Int32Value();
  // libpq sends text parameters as C strings: a NUL would silently cut them.
  // (The id and the address are the facade's to check: it refuses a NUL in
  // either before anything is sent, on read too.)
  auto has_nul = [](const std::string& text) { return text.find('\0') != std::string::npos; };
  if (!IsNullish(info[4])) {
    w.custom = Utf8(info[4]);
    if (has_nul(*w.custom)) {
      return Reject(env, code::kDataHasNul, "the custom field contains a NUL byte");
    }
  }
  if (!IsNullish(info[8])) {
    w.message = Utf8(info[8]);
    if (has_nul(*w.message)) {
      return Reject(env, code::kDataHasNul, "the error message contains a NUL byte");
    }
  }

  EnsureStarted();
  ErrorInfo error;
  Server* server = Route(w.id, &error);
  if (server == nullptr) return Reject(env, error);

  std::string address = Utf8(info[2]);
  if (!address.empty()) w.address = std::move(address);  // else unknown: an update keeps it
  if (!ReadExpires(info[3], &w.expires)) {
    return Reject(env, code::kInvalidArgument, kExpiresGuard);
  }
  // Issued now: a resend carries the same version, being the same write.
  w.version = NextVersion();

  auto deferred = Deferred::New(env);
  auto op = std::make_unique<Op>();
  // why: the write carries the whole new state, so resending it after a lost
  // connection stores the same row (at worst the counter counts it twice).
  op->key = w.id;
  // Only writes that leave the custom field alone merge (see kWriteManyArrays).
  if (!w.custom) op->merge = &write_many_;
  op->statements.push_back(WriteOne(std::move(w)));
  op->reroutable = true;
  op->batchable = true;
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
  std::optional<long long> expires;
  if (!ReadExpires(info.Length() > 1 ? info[1] : env.Undefined(), &expires)) {
    return Reject(env, code::kInvalidArgument, kExpiresGuard);
  }
  Statement s = Statement::Prepared(kTouchStmt);
  s.Bind(id);
  if (expires) {
    s.Bind(std::to_string(*expires));
  } else {
    s.BindNull();
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
  return DestroyEverywhere(env, id, home);
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

}  // namespace spg
