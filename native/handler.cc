// The JS binding of Handler: argument reading, the single-session operations
// (read, write, touch, destroy, message), routing and the promise plumbing
// that close() waits on. Outage recovery is in recovery.cc, operations across
// every server in fanout.cc.
#include "handler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "args.h"
#include "config.h"
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

// kWriteManyStmt from single writes (kWriteStmt parameters: $1 id, $2 name,
// $3 data, $4 address, $5 expires, $6 custom (null here), $7..$9 counts,
// $10 message, $11 version): the name once, then one array per other column.
Statement WriteMany(const std::vector<const Statement*>& writes) {
  Statement many = Statement::Prepared(kWriteManyStmt);
  many.Bind(writes.front()->params[kWriteName]);
  for (WriteParam param : kWriteManyArrays) many.Bind(ArrayOf(writes, param));
  return many;
}

// kWritePatchManyStmt from kWritePatchStmt writes: kWriteManyStmt's
// parameters, then one array per PatchParam.
// The patch arrays are null when no write has a patch (see kWritePatchManyStmt);
// the loaded flags and created times are always there.
Statement WritePatchMany(const std::vector<const Statement*>& writes) {
  Statement many = WriteMany(writes);
  many.name = kWritePatchManyStmt;
  const bool patches = std::any_of(writes.begin(), writes.end(),
                                   [](const Statement* s) { return !s->is_null[kWritePatch]; });
  for (PatchParam param : kWritePatchArrays) {
    if (patches || param == kWriteLoaded || param == kWriteCreated) {
      many.Bind(ArrayOf(writes, param));
    } else {
      many.BindNull();
    }
  }
  return many;
}

// kWriteStmt with `params`, or kWritePatchStmt when `patched`.
Statement WriteOne(WriteParams params, bool patched = false) {
  std::optional<std::string> patch = std::move(params.patch);
  std::optional<std::string> removed = std::move(params.removed);
  std::optional<std::string> read = std::move(params.read);
  const bool loaded = params.loaded;
  const std::optional<long long> created = params.created;
  Statement s = Statement::Prepared(patched ? kWritePatchStmt : kWriteStmt);
  auto bind = [&s](std::optional<std::string>& value) {
    if (value) {
      s.Bind(std::move(*value));
    } else {
      s.BindNull();
    }
  };
  for (std::optional<std::string>& value : std::move(params).Values()) bind(value);
  if (patched) {
    bind(patch);
    bind(removed);
    bind(read);
    s.Bind(loaded ? "t" : "f");
    if (created) {
      s.Bind(std::to_string(*created));
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

// why: PostgreSQL drops the connection on a message over 1 GB, and a write
// goes out as one message: its values, with room to spare for the rest of it.
// (Batches stay far below: Connection bounds them by bytes.)
constexpr size_t kMaxWriteBytes = (size_t{1} << 30) - (size_t{1} << 20);

// Absolute Unix seconds from JS (an expiry, a created time; nullopt: none
// given) in whole seconds. The range is the facade's rule (checkUnixSeconds,
// with its message); this guard keeps llround defined. False when `seconds`
// is out of it.
bool WholeSeconds(const std::optional<double>& seconds, std::optional<long long>* out) {
  if (!seconds) {
    out->reset();
    return true;
  }
  if (!(*seconds >= 0 && *seconds <= kMaxExpires)) return false;  // also NaN
  *out = std::llround(*seconds);
  return true;
}

constexpr const char* kExpiresGuard = "expires out of range (the facade checks it first)";
constexpr const char* kCreatedGuard = "created out of range (the facade checks it first)";

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
                         InstanceMethod("sessionsOf", &Handler::JsSessionsOf),
                         InstanceMethod("destroySessionsOf", &Handler::JsDestroySessionsOf),
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
  if (environment_->error_class().IsEmpty()) {
    Throw(env, MakeError(code::kInvalidArgument,
                         "initialize(errorClass, makeRow) must be called before new Handler()"));
    return;
  }
  ArgReader args(info, "new Handler(config: object)");
  Napi::Object object = args.Object(0);
  HandlerConfig config;
  ErrorInfo error = args.ok() ? ReadConfig(object, &config) : args.error();
  if (error) {
    Throw(env, error);
    return;
  }
  table_ = config.table;
  housekeeping_ = config.housekeeping;
  session_name_ = config.session_name;
  create_table_ = config.create_table;
  keep_expired_ = config.keep_expired;
  placement_name_ = config.placement_name;
  max_lifetime_ = config.max_lifetime;
  max_data_size_ = config.max_data_size;

  SqlOptions sql_options;
  sql_options.table = table_;
  sql_options.index = config.index;
  sql_options.housekeeping = housekeeping_;
  sql_options.records = config.records;
  sql_options.max_lifetime = max_lifetime_;
  sql_options.keep_expired = keep_expired_;
  sql_ = std::make_unique<Sql>(sql_options);
  sql_options.versioned = false;
  unversioned_sql_ = std::make_unique<Sql>(sql_options);

  // What every server is told; each adds its own index and entry.
  ServerConfig server_config;
  server_config.timings = config.timings;
  server_config.sql = sql_.get();
  server_config.unversioned_sql = unversioned_sql_.get();
  server_config.table = table_;
  server_config.housekeeping = housekeeping_;
  server_config.create_table = create_table_;
  // Seconds an expired row is kept before GC removes it (keepExpired: one lifetime).
  server_config.gc_grace = keep_expired_ ? max_lifetime_ : 0;
  server_config.gc_interval = config.gc_interval;
  server_config.vacuum_interval = config.vacuum_interval;
  std::vector<std::string> identities;
  for (ServerSpec& spec : config.servers) {
    identities.push_back(spec.identity);
    server_config.index = static_cast<int>(servers_.size());
    server_config.spec = std::move(spec);
    servers_.push_back(std::make_unique<Server>(environment_, this, server_config));
  }
  placement_ = std::make_unique<Placement>(config.placement, identities);

  write_many_.build = WriteMany;
  write_many_.distinct_keys = true;
  write_patch_many_.build = WritePatchMany;
  write_patch_many_.distinct_keys = true;
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

Napi::Value Handler::JsError(Napi::Env env, const ErrorInfo& error) const {
  return ToJs(env, environment_->error_class(), error);
}

Napi::Value Handler::Reject(Napi::Env env, const ErrorInfo& error) {
  auto deferred = Deferred::New(env);
  deferred.Reject(JsError(env, error));
  return deferred.Promise();
}

Napi::Value Handler::Throw(Napi::Env env, const ErrorInfo& error) {
  Napi::Error(env, JsError(env, error)).ThrowAsJavaScriptException();
  return env.Undefined();
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
  // why: a revocation still waiting for a server, and recorded on no other
  // server, dies with this handler: said once, so that whoever closes knows
  // those sessions are not revoked. A recorded one runs there on its return.
  for (const auto& [server, list] : missed_) {
    for (const Missed& m : list) {
      if (m.logout || m.recorded) continue;
      Warn(MakeError(code::kNoServer,
                     "server " + std::to_string(server) + ": closed before it came back: the " +
                         "sessions of user '" + m.subject + "' there are not revoked; call " +
                         "destroySessionsOf again once it is back",
                     server, true));
    }
  }
  missed_.clear();
  closing_ = true;
  close_waiters_.push_back(deferred);
  for (auto& server : servers_) server->housekeeping().Cancel();
  if (in_flight_ == 0) FinishClose();
  return deferred.Promise();
}

Napi::Value Handler::JsRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "read(id: string)");
  std::string id = args.String(0);
  if (!args.ok()) return Reject(env, args.error());
  if (closing()) return ClosedError(env);
  EnsureStarted();
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
  Napi::Value row = environment_->row_factory().Call(env.Undefined(), std::size(values), values);
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
      deferred.Reject(JsError(deferred.Env(), op.error));
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

// write(id, data, address, expires, custom, dErrors, dWarnings, dNotices, message,
//       patch, removed, read, loaded, created).
// The facade has checked the id, the address (no NUL), expires' range, and
// decided the short circuit; the bytes (size, NUL) are checked here, where the
// strings are copied anyway.
Napi::Value Handler::JsWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info,
                 "write(id, data, address, expires, custom, errors, warnings, notices, message, "
                 "patch, removed, read, loaded, created)");
  WriteParams w;
  w.id = args.String(0);
  Napi::String js_data = args.JsString(1);
  std::string address = args.String(2);
  std::optional<double> expires = args.NullableNumber(3);
  w.custom = args.NullableString(4);
  w.errors = args.Int32(5);
  w.warnings = args.Int32(6);
  w.notices = args.Int32(7);
  w.message = args.NullableString(8);
  w.patch = args.NullableString(9);
  w.removed = args.NullableString(10);
  w.read = args.NullableString(11);
  w.loaded = args.Boolean(12);
  std::optional<double> created = args.NullableNumber(13);
  if (!args.ok()) return Reject(env, args.error());
  if (closing()) return ClosedError(env);

  // The data is checked before anything else happens: too large or holding a
  // NUL byte (which a text column cannot store) means nothing is sent.
  size_t length = 0;
  napi_get_value_string_utf8(env, js_data, nullptr, 0, &length);
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
  napi_get_value_string_utf8(env, js_data, data.data(), length + 1, &length);
  if (const void* nul = std::memchr(data.data(), 0, data.size())) {
    return Reject(env, code::kDataHasNul,
                  "session data contains a NUL byte at offset " +
                      std::to_string(static_cast<const char*>(nul) - data.data()) +
                      "; encode binary data (e.g. base64) before storing it");
  }

  // libpq sends text parameters as C strings: a NUL would silently cut them.
  // (The id and the address are the facade's to check: it refuses a NUL in
  // either before anything is sent, on read too.)
  auto has_nul = [](const std::optional<std::string>& text) {
    return text && text->find('\0') != std::string::npos;
  };
  if (has_nul(w.custom)) {
    return Reject(env, code::kDataHasNul, "the custom field contains a NUL byte");
  }
  if (has_nul(w.message)) {
    return Reject(env, code::kDataHasNul, "the error message contains a NUL byte");
  }
  if (has_nul(w.patch) || has_nul(w.removed) || has_nul(w.read)) {
    return Reject(env, code::kDataHasNul, "the patch contains a NUL byte");
  }

  const size_t total = w.id.size() + session_name_.size() + data.size() + address.size() +
                       (w.custom ? w.custom->size() : 0) + (w.message ? w.message->size() : 0) +
                       (w.patch ? w.patch->size() : 0) + (w.removed ? w.removed->size() : 0) +
                       (w.read ? w.read->size() : 0);
  if (total > kMaxWriteBytes) return too_large("session data and fields are", total);

  EnsureStarted();
  ErrorInfo error;
  Server* server = Route(w.id, &error);
  if (server == nullptr) return Reject(env, error);

  w.name = session_name_;
  w.data = std::move(data);
  if (!address.empty()) w.address = std::move(address);  // else unknown: an update keeps it
  if (!WholeSeconds(expires, &w.expires)) {
    return Reject(env, code::kInvalidArgument, kExpiresGuard);
  }
  if (!WholeSeconds(created, &w.created)) {
    return Reject(env, code::kInvalidArgument, kCreatedGuard);
  }
  // Issued now: a resend carries the same version, being the same write.
  w.version = NextVersion();

  auto deferred = Deferred::New(env);
  auto op = std::make_unique<Op>();
  // why: the write carries the whole new state, so resending it after a lost
  // connection stores the same row (at worst the counter counts it twice).
  op->key = w.id;
  // Only writes that leave the custom field alone merge (see kWriteManyArrays).
  // Patches and writes of a session read live take the statement that knows
  // them; the others keep the plain upsert.
  const bool patched = w.patch || w.loaded;
  const bool loaded = w.loaded;
  if (!w.custom) op->merge = patched ? &write_patch_many_ : &write_many_;
  op->statements.push_back(WriteOne(std::move(w), patched));
  op->reroutable = true;
  op->batchable = true;
  op->done = [this, deferred](Op& op) {
    if (op.error) {
      deferred.Reject(JsError(deferred.Env(), op.error));
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
  // A logout while the home server was down left its tombstone on a server
  // standing in, and home still has the live row: brought home first, it
  // keeps the write of a request that read the session before it from
  // storing it again (and the write's DropCopies from removing the tombstone).
  if (loaded && Recovering(server)) {
    std::vector<Server*> fallbacks = Fallbacks(op->key, server);
    if (!fallbacks.empty()) {
      std::string id = op->key;
      auto pending = std::make_shared<OpPtr>(std::move(op));
      AdoptTombstone(server, std::move(id), std::move(fallbacks), 0,
                     [this, server, pending] { Submit(server, std::move(*pending)); });
      return deferred.Promise();
    }
  }
  Submit(server, std::move(op));
  return deferred.Promise();
}

Napi::Value Handler::JsTouch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "touch(id: string, expires?: number)");
  std::string id = args.String(0);
  std::optional<double> expires = args.NullableNumber(1);
  if (!args.ok()) return Reject(env, args.error());
  if (closing()) return ClosedError(env);
  EnsureStarted();
  ErrorInfo error;
  Server* server = Route(id, &error);
  if (server == nullptr) return Reject(env, error);
  std::optional<long long> whole;
  if (!WholeSeconds(expires, &whole)) return Reject(env, code::kInvalidArgument, kExpiresGuard);
  Statement s = Statement::Prepared(kTouchStmt);
  s.Bind(id);
  if (whole) {
    s.Bind(std::to_string(*whole));
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
      deferred.Reject(JsError(deferred.Env(), op.error));
    } else {
      deferred.Resolve(Napi::Boolean::New(deferred.Env(), AffectedRows(op.results[0].get()) > 0));
    }
  };
  Submit(server, std::move(op));
  return deferred.Promise();
}

Napi::Value Handler::JsDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "destroy(id: string, logout: boolean)");
  std::string id = args.String(0);
  const bool logout = info.Length() > 1 && args.Boolean(1);
  if (!args.ok()) return Reject(env, args.error());
  if (closing()) return ClosedError(env);
  EnsureStarted();
  ErrorInfo error;
  Server* home = Route(id, &error);
  if (home == nullptr) return Reject(env, error);
  return DestroyEverywhere(env, id, home, logout);
}

Napi::Value Handler::JsMessage(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "message(id: string)");
  std::string id = args.String(0);
  if (!args.ok()) return Reject(env, args.error());
  if (closing()) return ClosedError(env);
  EnsureStarted();
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
      deferred.Reject(JsError(deferred.Env(), op.error));
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
  ArgReader args(info, "onEvent(listener: (name, payload) => void)");
  Napi::Function listener = args.Function(0);
  if (!args.ok()) return Throw(info.Env(), args.error());
  events_ = Napi::Persistent(listener);
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
  events_.Call({Napi::String::New(env, "warning"), JsError(env, error)});
}

Napi::Value Handler::JsOrder(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ArgReader args(info, "order(id: string)");
  std::string id = args.String(0);
  if (!args.ok()) return Throw(env, args.error());
  std::vector<int> order;
  placement_->Order(id, &order);
  Napi::Array out = Napi::Array::New(env, order.size());
  for (size_t i = 0; i < order.size(); ++i) out.Set(static_cast<uint32_t>(i), order[i]);
  return out;
}

}  // namespace spg
