// One configured server (one `db` entry, possibly a libpq multi-host string):
// its connection, its up/down state, and the reconnect backoff.
//
// Thread: the JS thread. Ownership: owned by Handler; owns its Connection (by
// raw pointer until Close()/OnBroken) and its retry timer. It knows nothing of
// the handler: its settings come down in ServerConfig, and what it must tell
// the handler goes through ServerOwner.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "conninfo.h"
#include "connection.h"
#include "errors.h"
#include "housekeeping.h"
#include "loop.h"
#include "sql.h"

namespace spg {

class Server;

struct ServerTimings {
  double connect_timeout_ms = 5000;
  double statement_timeout_ms = 5000;
  double retry_min_ms = 100;
  double retry_max_ms = 5000;
  size_t max_batch = 1;    // ops per Sync (group commit)
  size_t connections = 1;  // per server
  bool synchronous_commit = true;
  // pooler 'transaction': no named statements, no session settings.
  bool unnamed = false;
};

// Everything a server is told when it is made: its entry, its timings, and the
// handler's table settings that its setup and housekeeping use.
struct ServerConfig {
  int index = 0;
  ServerSpec spec;
  ServerTimings timings;
  // The statements for a table with the version column and without it; owned
  // by the handler, which outlives its servers.
  const Sql* sql = nullptr;
  const Sql* unversioned_sql = nullptr;
  std::string table;         // quoted, as given to to_regclass
  std::string housekeeping;  // quoted name of the housekeeping record table
  bool create_table = true;
  long long gc_grace = 0;  // seconds an expired row is kept before GC removes it
  double gc_interval = 0;  // seconds; 0: no timer
  double vacuum_interval = 0;
};

// What a server lends its owner while it gets ready to go up (ServerOwner::BeforeUp).
struct BeforeUpCalls {
  // Sends `op` on the server's connection ahead of any session operation;
  // false (and `op` dropped, unsettled) once that setup has ended: the server
  // failed, was reset or closed meanwhile.
  std::function<bool(OpPtr)> send;
  // The owner is done: the server goes up, or, given an error, its setup
  // fails (it stays down and is tried again). Ignored once the setup ended.
  std::function<void(ErrorInfo)> done;
};

// The owner's side of one BeforeUp, kept by the server until `done`.
class BeforeUpWork {
 public:
  virtual ~BeforeUpWork() = default;
  // The server waits no longer for servers still making their first
  // connection alongside it (see Server::BeforeUp for how long it waits).
  virtual void GraceOver() = 0;
  // The server waits no longer for answers from other servers (its connect
  // timeout has passed since BeforeUp): go on with what has come.
  virtual void Deadline() = 0;
};

// What a server tells the layer above it (the handler), or asks of it.
class ServerOwner {
 public:
  // Whether the owner is closing: no new connections, no retries.
  virtual bool closing() const = 0;
  // A connection failed with `op` unsettled: resend it where that is safe,
  // else settle it with `error`.
  virtual void Resend(OpPtr op, const ErrorInfo& error) = 0;
  // Sends `op` to `server` counted among the ops close() waits for.
  virtual void SubmitTo(Server* server, OpPtr op) = 0;
  // A problem that fails no operation (a 'warning' event).
  virtual void Warn(const ErrorInfo& error) = 0;
  // The server came up or went down.
  virtual void ServerChanged(int server, bool up) = 0;
  // Every connection of `server` is set up: what it missed (revocations,
  // logouts) runs there now, through `calls`, before it is up; `calls.done`
  // ends it (perhaps before this returns). The work returned hears of the
  // deadline; none is needed when `done` was called already.
  virtual std::shared_ptr<BeforeUpWork> BeforeUp(int server, BeforeUpCalls calls) = 0;
  // A GC tick of `server`'s housekeeping timer (every process, every
  // gcInterval): records held there for servers that are up are replayed.
  virtual void SweepRecords(int server) = 0;

 protected:
  ~ServerOwner() = default;
};

class Server : public ConnectionDelegate, private Housekeeping::Host {
 public:
  enum class State { kDown, kConnecting, kUp };
  // What setup found of a table on this server (for `init` to report):
  // unknown until checked; kCreated only when this handler's own DDL made it.
  enum class Found { kUnknown, kExisted, kCreated, kMissing };

  Server(Loop* loop, ServerOwner* owner, ServerConfig config);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Connects unless already connected or connecting.
  void Start();
  // Sends `op` on one of the current connections (queued while they connect).
  // The op's `done` runs on completion; on a connection failure the owner's
  // Resend decides what becomes of it.
  void Submit(OpPtr op);
  // Fresh connections now; the old ones finish what they have in flight.
  void Reconnect();
  // Closes the connection and timers without settling anything still queued.
  void Close();

  int index() const { return index_; }
  State state() const { return state_; }
  // Whether new sessions may be sent here: up, or making its first connection
  // (ops then wait for it). A server being probed after a failure is not.
  bool routable() const {
    return state_ == State::kUp || (state_ == State::kConnecting && attempts_ == 0);
  }
  const ServerSpec& spec() const { return spec_; }
  double state_since() const { return state_since_; }  // Unix seconds
  uint64_t operations() const { return operations_; }
  uint64_t failures() const { return failures_; }
  const ErrorInfo& last_error() const { return last_error_; }
  Housekeeping& housekeeping() { return housekeeping_; }
  const Housekeeping& housekeeping() const { return housekeeping_; }
  // Unix seconds of the last return from a failure (0: never failed).
  double recovered_at() const { return recovered_at_; }
  Found table_found() const { return table_found_; }
  // The index on sess_expire: kMissing on a table made without it (GC by
  // ranges, docs/operations.md) as much as on one whose index was dropped.
  Found index_found() const { return index_found_; }
  Found housekeeping_found() const { return housekeeping_found_; }
  // The table of records of what other servers missed (Sql::records_table).
  Found records_found() const { return records_found_; }
  // Whether records can be kept here: its setup found (or made) their table.
  bool keeps_records() const {
    return records_found_ == Found::kExisted || records_found_ == Found::kCreated;
  }
  // The version column: kCreated when this handler added it.
  Found version_found() const { return version_found_; }
  // The host and port of the entry that the server's connections use while it
  // is up (PQhost/PQport); empty otherwise.
  const std::string& host_in_use() const { return host_in_use_; }
  const std::string& port_in_use() const { return port_in_use_; }

  // ConnectionDelegate
  void OnConnected(Connection* conn) override;
  void OnBroken(Connection* conn, ErrorInfo error, std::deque<OpPtr> ops) override;
  void OnRetired(Connection* conn) override;

 private:
  // Housekeeping::Host
  bool server_up() const override { return state_ == State::kUp; }
  bool closing() const override { return owner_->closing(); }
  void SubmitTracked(OpPtr op) override { owner_->SubmitTo(this, std::move(op)); }
  void Warn(const ErrorInfo& error) override { owner_->Warn(error); }
  void GcTick() override { owner_->SweepRecords(index_); }

  void SubmitBarrier(OpPtr op);
  void SetState(State state);
  // Where the setup of one connection stands: the step whose answer it awaits.
  // From kChecking, the check's answer picks the next step; each step runs at
  // most once per connection, so a check that finds the same thing again
  // fails (or goes on without) instead of looping.
  enum class Setup {
    kConnecting,            // the connection is being opened
    kChecking,              // session settings, role check, table check
    kCreatingTable,         // table, index and housekeeping table, under the DDL lock
    kRechecking,            // the table check again, under the DDL lock
    kAddingVersion,         // the version column, under the DDL lock
    kCreatingHousekeeping,  // the housekeeping and records tables alone
    kPreparing,             // the statements, prepared
    kReady,                 // ordinary ops go out
  };
  // One connection of the server, with its own setup progress.
  struct Slot {
    Connection* conn = nullptr;
    Setup setup = Setup::kConnecting;
    unsigned taken = 0;     // the steps entered so far, a bit each (see Advance)
    bool versioned = true;  // its table has the version column (which statements it prepares)
    bool took(Setup step) const { return (taken & (1u << static_cast<int>(step))) != 0; }
  };
  // The one place a slot's setup moves: to `step` unless this connection has
  // been there before (false then, and nothing changes).
  static bool Advance(Slot* slot, Setup step);
  Slot* SlotOf(const Connection* conn);
  std::deque<OpPtr> DropConnections(const ErrorInfo& error);
  void SetupChecked(Connection* conn, Op& op);
  // Fails `conn` if the role check of its setup found the server read-only.
  bool RejectReadOnly(Connection* conn, const PGresult* role);
  // The table check: sql.check with the table and housekeeping table names.
  Statement CheckStatement() const;
  // Runs `ddl` under the DDL lock, then the table check again, in one
  // implicit transaction; the check's answer goes to SetupChecked.
  // With `ddl`, the check also runs before it, so that what the DDL created is
  // known exactly (another process may have created it while we waited).
  void CheckUnderLock(Connection* conn, std::vector<Statement> ddl);
  void CreateHousekeeping(Connection* conn);
  // The table lacks the version column: adds it (createTable), else warns once
  // that this server's rows are ordered as before versions; then setup goes on.
  void AddVersion(Connection* conn);
  void Unversioned(Slot* slot, const std::string& why);
  // A finding replaces an unknown one, or a table found missing before.
  static void Note(Found* field, Found value);
  void Prepare(Connection* conn);
  void SetupPrepared(Connection* conn, Op& op);
  // Every connection is set up: runs what the owner wants done before the
  // server is up (BeforeUp), on `conn`, then makes them ready and announces
  // the server up. Until then no session operation goes out on them.
  void BeforeUp(Connection* conn);
  void BeforeUpDone(Connection* conn, ErrorInfo error);
  // The current connections' setup is over (failed, reset, closed): what
  // BeforeUp started for them is forgotten.
  void EndSetup();
  static void OnBeforeUpTimer(uv_timer_t* timer);
  // A timer of this server (data: this), unref'd; closed with CloseHandle.
  uv_timer_t* NewTimer();
  void GoUp();
  void ScheduleRetry();
  void Failed(ErrorInfo error);
  static void OnRetryTimer(uv_timer_t* timer);

  Loop* loop_;
  ServerOwner* owner_;
  int index_;
  ServerSpec spec_;
  ServerTimings timings_;
  const Sql* sql_;
  const Sql* unversioned_sql_;
  std::string table_;
  std::string housekeeping_table_;
  bool create_table_;
  State state_ = State::kDown;
  double state_since_ = 0;
  std::vector<Slot> slots_;                  // the connections new ops go to; empty when down
  std::unordered_set<Connection*> retired_;  // finishing their ops after Reconnect(), or failing
  std::deque<OpPtr>* dropped_ = nullptr;     // ops of the connections DropConnections fails
  uv_timer_t* retry_timer_ = nullptr;        // owned; unref'd so it never keeps a process alive
  int attempts_ = 0;                         // consecutive failed connects
  uint64_t operations_ = 0;
  uint64_t failures_ = 0;
  double recovered_at_ = 0;
  ErrorInfo last_error_;
  Found table_found_ = Found::kUnknown;
  Found housekeeping_found_ = Found::kUnknown;
  Found version_found_ = Found::kUnknown;
  Found index_found_ = Found::kUnknown;
  Found records_found_ = Found::kUnknown;
  // Counts the sets of connections: BeforeUp's calls act only on their own.
  uint64_t setup_epoch_ = 0;
  bool waiting_before_up_ = false;             // BeforeUp's owner has not called done yet
  std::shared_ptr<BeforeUpWork> before_up_;    // its work, told of the deadline
  uv_timer_t* before_up_timer_ = nullptr;      // owned; unref'd; the grace, then the deadline
  double before_up_left_ms_ = 0;               // from the grace to the deadline
  double started_at_ = 0;                      // Unix seconds: when Start() last connected
  bool announced_up_ = false;  // the last event was 'up' (reset() keeps it so)
  bool warned_unversioned_ = false;  // the warning that the table has no version column
  std::string host_in_use_, port_in_use_;
  Housekeeping housekeeping_;
};

}  // namespace spg
