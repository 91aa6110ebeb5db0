// The session handler: the JS-facing object (SessionPgsql's native half) and
// what sessions do on the servers: placement, read/write/touch/destroy,
// keepExpired, outage recovery, and the rows turned into JS values. What a
// caller may pass (ids, addresses, ranges) and whether a write is skipped (the
// forced write, the short circuit) are the facade's rules (lib/); the binding
// checks only types, and bytes as it copies them (size, NUL), plus guards that
// keep its casts defined. Its arguments are read by args.h, its config object
// by config.cc.
// Defined in three files: handler.cc (the JS binding and single-session
// operations), recovery.cc (look-aside, copies, tombstones) and fanout.cc
// (joins, the barrier, and operations across every server).
//
// Thread: the JS thread. Lifetime: held by its JS wrapper; pinned (Ref) from
// the first connection until close() has drained every operation, so pending
// callbacks never outlive it. Abandon() is the environment teardown path.
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "deferred.h"
#include "environment.h"
#include "errors.h"
#include "placement.h"
#include "server.h"
#include "sql.h"

namespace spg {

// A PostgreSQL text[] literal of `values`, each quoted.
std::string TextArray(const std::vector<std::string>& values);

struct Held;  // a record read back from the server keeping it (records.cc)

// What a server missed, to replay there before it is up again: a revocation
// of a user's sessions (kRevokeStmt) or a logout (kLogoutStmt). Recorded on
// the servers that were up (records.cc); a revocation is also kept in the
// memory of the process that made it (Handler::missed_).
struct Missed {
  bool logout = false;
  std::string subject;  // the user, or the stored key of the session logged out
  std::string spared;   // a revocation's ids spared, a text[] literal; a logout's: ""
  long long version = 0;
  // A revocation's time (Unix seconds): sessions created later are spared.
  std::optional<long long> before;
  // Some other server keeps a record of it (a revocation's; see JsClose).
  bool recorded = false;
};

class Handler : public Napi::ObjectWrap<Handler>,
                public ServerOwner,
                public Environment::Resident {
 public:
  // The class, made once per environment: its instances live in `environment`.
  static Napi::Function Define(Napi::Env env, Environment* environment);
  explicit Handler(const Napi::CallbackInfo& info);
  ~Handler() override;

  // Environment teardown: closes everything, settles nothing (no JS can run).
  void Abandon() override;

  // ServerOwner
  // A connection failed with `op` unsettled: resend it where that is safe (once,
  // to the next server in the session's order), else settle it with `error`.
  void Resend(OpPtr op, const ErrorInfo& error) override;
  // Sends `op` to `server` with the in-flight bookkeeping that close() waits on.
  void SubmitTo(Server* server, OpPtr op) override { Submit(server, std::move(op)); }
  // Reports a problem that does not fail any operation (as a 'warning' event).
  void Warn(const ErrorInfo& error) override;
  // A server came up or went down: an 'up'/'down' event with its index.
  void ServerChanged(int server, bool up) override;
  bool closing() const override { return closing_ || abandoned_; }
  // What `server` missed (kept here, and recorded on the servers up here),
  // replayed there before it is up; and what it holds for servers up here,
  // replayed on them (records.cc).
  std::shared_ptr<BeforeUpWork> BeforeUp(int server, BeforeUpCalls calls) override;
  void SweepRecords(int server) override;

 private:
  Napi::Value JsOpen(const Napi::CallbackInfo& info);
  Napi::Value JsRead(const Napi::CallbackInfo& info);
  Napi::Value JsWrite(const Napi::CallbackInfo& info);
  Napi::Value JsTouch(const Napi::CallbackInfo& info);
  Napi::Value JsDestroy(const Napi::CallbackInfo& info);
  Napi::Value JsMessage(const Napi::CallbackInfo& info);
  Napi::Value JsGc(const Napi::CallbackInfo& info);
  Napi::Value JsVacuum(const Napi::CallbackInfo& info);
  Napi::Value JsStats(const Napi::CallbackInfo& info);
  Napi::Value JsList(const Napi::CallbackInfo& info);
  Napi::Value JsClear(const Napi::CallbackInfo& info);
  Napi::Value JsSessionsOf(const Napi::CallbackInfo& info);
  Napi::Value JsDestroySessionsOf(const Napi::CallbackInfo& info);
  Napi::Value JsOnEvent(const Napi::CallbackInfo& info);
  Napi::Value JsStatus(const Napi::CallbackInfo& info);
  Napi::Value JsOrder(const Napi::CallbackInfo& info);
  Napi::Value JsReset(const Napi::CallbackInfo& info);
  Napi::Value JsClose(const Napi::CallbackInfo& info);

  void EnsureStarted();
  void ReadAt(Server* server, std::string id, Deferred deferred);
  // Whether `home` came back from an outage less than maxLifetime ago, so
  // sessions written elsewhere meanwhile may still live on the servers after it.
  bool Recovering(const Server* home) const;
  // The servers after `home` in the id's order that are up.
  std::vector<Server*> Fallbacks(const std::string& id, const Server* home);
  // Looks for the session on fallbacks[next...] and moves a copy newer than
  // home's (row `home_row` of `at_home`, the read result there) home before
  // answering.
  void LookAside(Server* home, std::string id, Deferred deferred, ResultPtr at_home, int home_row,
                 std::vector<Server*> fallbacks, size_t next);
  // Deletes session `id` on every server that is up, or leaves a tombstone
  // where its row could come back; `home` (routed) decides the outcome.
  // With `logout`, every server keeps a tombstone (kLogoutStmt) instead: a
  // request that read the session before cannot store it again anywhere.
  Napi::Value DestroyEverywhere(Napi::Env env, const std::string& id, Server* home,
                                bool logout = false);
  // Looks for a tombstone of `id` on fallbacks[next...] and, at the first
  // found, adopts it at `home` (unless home has a newer row); then `then`.
  void AdoptTombstone(Server* home, std::string id, std::vector<Server*> fallbacks, size_t next,
                      std::function<void()> then);
  // Deletes the id on `servers` (best effort), then calls `then`.
  void DropCopies(const std::string& id, const std::vector<Server*>& servers,
                  std::function<void()> then);
  // The session in row `row` of a read's result (none there: a new session).
  Napi::Object BuildRow(Napi::Env env, const PGresult* r, int row, int server);
  // The first routable server in the id's order, or nullptr (error set).
  Server* Route(const std::string& id, ErrorInfo* error);
  // A write of session `id` was given up on `server` (its connection failed
  // first): the server may still run it, late. Remembered for maxLifetime.
  void GaveUp(const std::string& id, int server);
  bool MayRunLate(const std::string& id, int server) const;
  // Wraps `op->done` bookkeeping and sends it to `server`.
  void Submit(Server* server, OpPtr op);
  void OpSettled();
  void FinishClose();
  // Waits for an empty op (a Sync round trip) on every server; `done` gets
  // whether any answered.
  void Barrier(std::function<void(bool, ErrorInfo)> done);
  // One step per server joined into one promise: it rejects with the first
  // error, else resolves with what `result` builds once every step is done.
  struct Join {
    size_t remaining;
    ErrorInfo error;
    Deferred deferred;
    std::function<Napi::Value(Napi::Env)> result;
  };
  std::shared_ptr<Join> NewJoin(Napi::Env env, size_t steps,
                                std::function<Napi::Value(Napi::Env)> result);
  void StepDone(const std::shared_ptr<Join>& join, const ErrorInfo& error);
  std::vector<Server*> Routable() const;
  // Runs `sql` on every server that is up; `each` sees each result.
  Napi::Value OnEveryServer(Napi::Env env, const std::string& sql,
                            std::function<void(const PGresult*)> each,
                            std::function<Napi::Value(Napi::Env)> result);
  // A SessionPgsqlError (the class given to the addon's initialize()).
  Napi::Value JsError(Napi::Env env, const ErrorInfo& error) const;
  // How every binding reports `error`: an async one returns a rejected
  // promise, a sync one throws (and returns undefined).
  Napi::Value Reject(Napi::Env env, const ErrorInfo& error);
  Napi::Value Throw(Napi::Env env, const ErrorInfo& error);
  Napi::Value Reject(Napi::Env env, const char* code, const std::string& message);
  Napi::Value NoServerUp(Napi::Env env);
  Napi::Value ClosedError(Napi::Env env);

  // Durable records (records.cc).
  // The statement that replays `missed` on the server that missed it.
  static Statement Replay(const Missed& missed);
  // The statement that records `missed` for `targets` (server indexes) on the
  // server it runs on (Sql::record_revoke, Sql::record_logout).
  Statement RecordStatement(const Missed& missed, const std::vector<int>& targets) const;
  // Records `missed` for `targets` on every server of `holders` that keeps
  // records, then `then` with whether any holder stored it.
  void Record(const Missed& missed, const std::vector<int>& targets,
              const std::vector<Server*>& holders, std::function<void(bool)> then);
  // The servers that may hold records now: up, with the records table.
  std::vector<Server*> Holders(const Server* except) const;
  // The server of an identity (ServerSpec::identity), or -1.
  int ServerOfIdentity(const std::string& identity) const;
  // Replays the records `holder` keeps for servers that are up, drops them from
  // it once applied, then `then` (gc(), the GC timer).
  void Sweep(Server* holder, std::function<void()> then);
  struct Catchup;
  void CatchupStep(const std::shared_ptr<Catchup>& catchup);
  // Of `held`, the records for servers up here (but `except`), by server.
  std::unordered_map<int, std::vector<const Held*>> ByTarget(const std::vector<Held>& held,
                                                              int except) const;
  // Runs `records` (kept by `holder`, all for `target`) on `target`, then
  // deletes them from `holder`: `replayed` once the run has answered,
  // `dropped` once the delete has too (at once when the run failed, or the
  // holder is down).
  void HandOver(Server* holder, int target, const std::vector<const Held*>& records,
                std::function<void()> replayed, std::function<void()> dropped);

  Environment* environment_;
  Napi::FunctionReference events_;    // (name, payload) => void, set by the facade
  std::vector<std::unique_ptr<Server>> servers_;
  std::unique_ptr<Placement> placement_;
  std::unique_ptr<Sql> sql_;
  std::unique_ptr<Sql> unversioned_sql_;  // for a table not yet migrated
  Merge write_many_;          // writes that leave the custom field alone, merged per batch
  Merge write_patch_many_;    // the same for patches and writes of sessions read live
  Merge read_many_;           // reads side by side, merged per group
  std::string table_;         // quoted table name, as given to to_regclass
  std::string housekeeping_;  // quoted name of the housekeeping record table
  std::string session_name_;
  bool create_table_ = true;
  bool keep_expired_ = false;
  std::string placement_name_;  // 'rendezvous', 'php' or 'failover' (failoverMode)
  long long max_lifetime_ = 1440;
  size_t max_data_size_ = 1 << 20;

  bool started_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool abandoned_ = false;
  size_t in_flight_ = 0;  // ops submitted and not yet settled
  std::vector<Deferred> close_waiters_;
  std::vector<int> order_;  // scratch for Route()
  struct GaveUpOn {
    uint64_t servers;  // bit i: server i (every bit: a server past the 64th)
    double at;         // Unix seconds of the last time
  };
  std::unordered_map<std::string, GaveUpOn> gave_up_;
  // The revocations a server missed while it could not be reached: per
  // server, in order, what runs there before it is up again in this process
  // (Server::BeforeUp), recorded on the servers that were up as well.
  std::unordered_map<int, std::vector<Missed>> missed_;
  size_t prune_gave_up_at_ = 1024;
};

}  // namespace spg
