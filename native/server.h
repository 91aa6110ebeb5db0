// One configured server (one `db` entry, possibly a libpq multi-host string):
// its connection, its up/down state, and the reconnect backoff.
//
// Thread: the JS thread. Ownership: owned by Handler; owns its Connection (by
// raw pointer until Close()/OnBroken) and its retry timer.
#pragma once

#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <unordered_set>
#include <vector>

#include "connection.h"
#include "errors.h"
#include "housekeeping.h"

namespace spg {

class Addon;
class Handler;

// What a `db` entry says about a server, from PQconninfoParse.
struct ServerSpec {
  std::string conninfo;  // as given (trimmed)
  std::string redacted;  // key=value form with every secret option replaced by ***
  std::string identity;  // host(s), port(s) and database: stable across list reorders
  std::vector<std::string> secrets;  // values of the entry's secret options (password, ...)
  // One per host, in the order to try them, when the entry lists several
  // hosts; empty otherwise (see ConnectionConfig::targets).
  std::vector<ConnectTarget> targets;
};

// Parses one entry; on failure `error` names the problem without any secret.
bool ParseServerSpec(const std::string& entry, ServerSpec* spec, std::string* error);

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

class Server : public ConnectionDelegate {
 public:
  enum class State { kDown, kConnecting, kUp };
  // What setup found of a table on this server (for `init` to report):
  // unknown until checked; kCreated only when this handler's own DDL made it.
  enum class Found { kUnknown, kExisted, kCreated, kMissing };

  Server(Addon* addon, Handler* handler, int index, ServerSpec spec, ServerTimings timings,
         double gc_interval, double vacuum_interval);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Connects unless already connected or connecting.
  void Start();
  // Sends `op` on one of the current connections (queued while they connect).
  // The op's `done` runs on completion; on a connection failure the handler's
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
  const ServerTimings& timings() const { return timings_; }
  Housekeeping& housekeeping() { return housekeeping_; }
  const Housekeeping& housekeeping() const { return housekeeping_; }
  // Unix seconds of the last return from a failure (0: never failed).
  double recovered_at() const { return recovered_at_; }
  Found table_found() const { return table_found_; }  // with its sess_expire index
  Found housekeeping_found() const { return housekeeping_found_; }
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
  void SubmitBarrier(OpPtr op);
  void SetState(State state);
  // One connection of the server, with its own setup progress.
  struct Slot {
    Connection* conn = nullptr;
    bool created = false;    // this connection already tried CREATE TABLE
    bool rechecked = false;  // this connection checked again under the lock
    bool migrated = false;   // this connection tried to add the version column
    bool versioned = true;   // its table has the version column (which statements it prepares)
    bool ready = false;      // setup done: ordinary ops go out
  };
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
  void ScheduleRetry();
  void Failed(ErrorInfo error);
  static void OnRetryTimer(uv_timer_t* timer);

  Addon* addon_;
  Handler* handler_;
  int index_;
  ServerSpec spec_;
  ServerTimings timings_;
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
  bool announced_up_ = false;  // the last event was 'up' (reset() keeps it so)
  bool warned_unversioned_ = false;  // the warning that the table has no version column
  std::string host_in_use_, port_in_use_;
  Housekeeping housekeeping_;
};

}  // namespace spg
