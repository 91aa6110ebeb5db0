// Garbage collection and VACUUM of one server's session table: timers in every
// process, coordinated through the housekeeping record table so that all the
// processes and hosts sharing the server run each job at most once per interval.
//
// Thread: the JS thread. Ownership: owned by its Server; owns its timers and the
// short-lived connection each GC and VACUUM run works on. Its settings come down in
// HousekeepingConfig; what it needs of its server goes through Host.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "connection.h"
#include "errors.h"
#include "loop.h"
#include "sql.h"

namespace spg {

// The longest rest between two GC batches (see Housekeeping::GcPause).
inline constexpr double kGcMaxPauseSeconds = 1.0;

struct HousekeepingConfig {
  const Sql* sql = nullptr;  // owned by the handler, which outlives housekeeping
  std::string table;         // quoted
  std::string housekeeping_table;  // quoted; the table check (Sql::check) names it
  long long gc_grace = 0;    // seconds an expired row is kept (keepExpired: one lifetime)
  double gc_interval = 0;    // seconds; 0: no timer
  double vacuum_interval = 0;
  // Where each GC and VACUUM run connects (a connection of its own, so session
  // traffic never queues behind them); `server` names the server in messages.
  ConnectionConfig own_connection;
};

class Housekeeping : public ConnectionDelegate {
 public:
  // What housekeeping needs of the server it works for.
  class Host {
   public:
    // The server is up (its session connections are ready).
    virtual bool server_up() const = 0;
    // The handler is closing: no new runs.
    virtual bool closing() const = 0;
    // Sends `op` on the server's session connections, counted among the ops
    // that close() waits for.
    virtual void SubmitTracked(OpPtr op) = 0;
    // A problem that fails no operation (a 'warning' event).
    virtual void Warn(const ErrorInfo& error) = 0;
    // The GC timer ticked while the server is up (claimed by this process or not).
    virtual void GcTick() = 0;

   protected:
    ~Host() = default;
  };

  struct Run {
    bool valid = false;   // a run has finished in this process
    double at = 0;        // Unix seconds it started
    double duration = 0;  // seconds
    long long removed = 0;
    std::string error;  // empty when it succeeded
  };
  using GcDone = std::function<void(const ErrorInfo& error, long long removed)>;
  using VacuumDone = std::function<void(const ErrorInfo& error, bool ran)>;

  Housekeeping(Loop* loop, Host* host, HousekeepingConfig config);
  ~Housekeeping() override;
  Housekeeping(const Housekeeping&) = delete;
  Housekeeping& operator=(const Housekeeping&) = delete;

  // The server is up: start the timers (once).
  void ServerUp();
  void Close();
  // The handler is closing: a VACUUM in progress is stopped and its callers
  // told so (SPG_CLOSED), since close() must not wait for a long VACUUM; a GC
  // run stops after the batches that have committed, and resolves with them.
  void Cancel();
  // `forced` runs whatever the interval says (gc(), the CLI); otherwise the run
  // happens only if no process has started one within the interval.
  void Gc(bool forced, GcDone done);
  void Vacuum(bool forced, VacuumDone done);

  const Run& last_gc() const { return last_gc_; }
  const Run& last_vacuum() const { return last_vacuum_; }

  // ConnectionDelegate, for the GC and VACUUM connections.
  void OnConnected(Connection* conn) override;
  void OnBroken(Connection* conn, ErrorInfo error, std::deque<OpPtr> ops) override;
  void OnRetired(Connection*) override {}

 private:
  static void OnTimer(uv_timer_t* timer);
  uv_timer_t* StartTimer(double interval);
  void CloseTimer(uv_timer_t** timer);
  // The claim is ours: the run opens its connection, finds the table's size and
  // whether it has the expiry index (which picks the GcWay), then batches.
  void StartGc(std::shared_ptr<struct GcState> state);
  Statement GcClaim(const struct GcState& state) const;
  // The claim's answer: true when the run goes on; otherwise it has ended.
  bool GcClaimed(const std::shared_ptr<struct GcState>& state, Op& op);
  void GcPlanned(const std::shared_ptr<struct GcState>& state, Op& op);
  void GcBatch(std::shared_ptr<struct GcState> state);
  // Waits as long as the last batch took (at most kGcMaxPauseSeconds), then
  // sends the next one.
  void GcPause(const std::shared_ptr<struct GcState>& state);
  // Every run's batches end here: a run that won the claim is recorded (on its
  // own connection while it has one), then GcClosed.
  void GcEnded(const std::shared_ptr<struct GcState>& state, const ErrorInfo& error);
  // The run lets go of its connection; GcFinished follows.
  void GcClosed(const std::shared_ptr<struct GcState>& state);
  // Every GC run ends here: the one place the timer's run is marked over.
  void GcFinished(struct GcState& state, const ErrorInfo& error);
  Statement RecordStatement(const std::string& job, const Run& run, const ErrorInfo& error) const;
  // Records a run on the session connection (best effort).
  void Record(const std::string& job, Run* run, const ErrorInfo& error);
  void StartVacuum();
  void VacuumFinished(ErrorInfo error);
  int server() const { return config_.own_connection.server; }

  Loop* loop_;
  Host* host_;
  HousekeepingConfig config_;
  std::string gc_job_, vacuum_job_;
  uv_timer_t* gc_timer_ = nullptr;      // owned; unref'd
  uv_timer_t* vacuum_timer_ = nullptr;  // owned; unref'd
  bool gc_running_ = false;  // the timer's own GC run is under way (set in Gc, reset in GcFinished)
  bool denied_reported_ = false;
  Run last_gc_, last_vacuum_;
  std::vector<std::shared_ptr<struct GcState>> gc_runs_;  // runs with a connection of their own
  bool vacuum_busy_ = false;           // a VACUUM run (check, claim, VACUUM) is under way
  Connection* vacuum_conn_ = nullptr;  // the running VACUUM's own connection
  Run vacuum_run_;                     // the VACUUM in progress
  std::vector<VacuumDone> vacuum_waiters_;
};

}  // namespace spg
