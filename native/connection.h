// One PGconn driven without blocking: non-blocking connect under our own
// deadline, pipeline mode, a FIFO of operations in flight, output flushed once
// per loop turn (by Addon's prepare hook) and between the few-at-a-time answers
// of Addon::RunDeliveries, the socket watched by uv_poll on the environment's
// own loop.
//
// Thread: the JS thread of one environment only.
// Ownership: created by Server, which keeps a raw pointer until it calls Close()
// or receives OnBroken(); the object deletes itself once its uv handles have
// closed, so a pointer must not be used after either of those.
#pragma once

#include <libpq-fe.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "errors.h"
#include "loop.h"
#include "sql.h"

namespace spg {

class Connection;

// Shared: the ops of a merged read all hold the one result, a row each.
using ResultPtr = std::shared_ptr<PGresult>;
inline ResultPtr AdoptResult(PGresult* r) { return ResultPtr(r, PQclear); }

struct Statement {
  enum class Kind { kPrepare, kPrepared, kParams };
  Kind kind = Kind::kPrepared;
  std::string name;     // name on the wire (kPrepare); key or name (kPrepared)
  std::string sql;      // text (kPrepare, kParams)
  int param_count = 0;  // kPrepare only
  std::vector<std::string> params;
  std::vector<char> is_null;  // same length as params

  static Statement Prepare(std::string name, std::string sql, int param_count);
  static Statement Prepared(std::string name);
  static Statement Text(std::string sql);
  Statement& Bind(std::string value);
  Statement& BindNull();
};

// Ops that one statement can do together (a write or a read of many
// sessions): build makes that statement from the ops' own statements, in
// order. A write can change a row once per statement, so its ids must differ.
struct Merge {
  std::function<Statement(const std::vector<const Statement*>&)> build;
  bool distinct_keys = false;
};

// One unit of work: its statements go out back to back followed by one Sync, so
// they run as one implicit transaction. `done` is called exactly once on the JS
// thread (inside a JS scope) once the Sync's result has arrived: setup ops at
// once, others by Addon::RunDeliveries when the poll callback that read it ends.
// If the connection breaks first, the op is handed to the delegate instead.
struct Op {
  std::vector<Statement> statements;
  std::function<void(Op&)> done;
  bool setup = false;        // may be sent before the connection is ready
  bool no_deadline = false;  // exempt from the statement deadline (VACUUM)
  // Group commit: batchable ops (writes) wait while the connection's write
  // batch is in flight, then go out together: one round trip, one commit.
  // Other ops go out at once: reads side by side share a Sync, anything else
  // has its own. A read of a session with a write still pending queues behind
  // that write, so order per id holds.
  bool batchable = false;
  bool read_only = false;
  // Neighbours in a write batch or a read group with the same `merge` go out
  // as one statement. The first carries it; the others ride along: nothing of
  // theirs is sent, and they settle with it, sharing its results (`row` is
  // each one's row). A failure of that statement names no op, so each of them
  // is then sent again alone.
  const Merge* merge = nullptr;

  // Routing, set by Handler/Server.
  std::string key;          // the session id, when the op concerns one
  bool reroutable = false;  // safe to resend on another server after a connection loss
  int attempts = 0;         // times it was resent
  int server = -1;          // the server it was last submitted to
  // Bytes of its parameters as elements of a merged statement's arrays (quotes
  // and backslashes escaped): what it adds to a batch. Counted at Enqueue.
  size_t bytes = 0;

  // Filled in as results arrive.
  ErrorInfo error;                 // the first failure within this op
  std::vector<ResultPtr> results;  // one slot per statement; null when failed/aborted
  int row = 0;                     // this op's row of results[0] (merged: its place)
  bool aborted = false;            // skipped because an earlier op of its batch failed
  bool syncs = true;               // a Sync follows it (it ends its batch)
  bool in_batch = false;           // sent as part of a write batch
  bool failed_at_commit = false;   // its error came at COMMIT, not from its statements
  bool solo = false;               // resent alone, to find which op a COMMIT failure was for
  size_t riders = 0;               // ops after it whose statements it carried (merged)

  // Forgets what happened to it on the wire, before it is sent again.
  void ClearOutcome() {
    error = {};
    for (ResultPtr& r : results) r.reset();
    row = 0;
    aborted = failed_at_commit = false;
    riders = 0;
  }
};
using OpPtr = std::unique_ptr<Op>;

class ConnectionDelegate {
 public:
  virtual ~ConnectionDelegate() = default;
  // The connection is in pipeline mode and may send setup ops.
  virtual void OnConnected(Connection* conn) = 0;
  // The connection failed and is closed; `ops` are every op not yet settled,
  // in submission order. Called at most once, and never after Close().
  virtual void OnBroken(Connection* conn, ErrorInfo error, std::deque<OpPtr> ops) = 0;
  // A retired connection has settled its last op and closed itself.
  virtual void OnRetired(Connection* conn) = 0;
};

// One host of a multi-host entry: every option of the entry, with host,
// hostaddr and port narrowed to that host's (PQconnectStartParams keywords).
struct ConnectTarget {
  std::vector<std::string> keywords, values;
  std::string label;  // host:port, for messages
};

struct ConnectionConfig {
  int server = 0;
  std::string conninfo;
  // why: libpq walks a multi-host entry by itself, but PQconnectPoll ignores
  // connect_timeout, so our one timer would cover every host and a hung first
  // host would use it all up. Hosts are then tried one at a time, each under
  // its own connect timeout. Empty: the whole entry in one attempt.
  std::vector<ConnectTarget> targets;
  std::vector<std::string> secrets;  // the entry's passwords, scrubbed from messages
  double connect_timeout_ms = 5000;
  double statement_timeout_ms = 5000;
  size_t max_in_flight = 1000;
  size_t max_batch = 1;  // ops per Sync; 1 = every op commits on its own
  // What Statement::Prepared(key) stands for: its name on the wire, or its text.
  std::vector<Sql::Prepared> statements;
  // pooler 'transaction': each transaction may run on another backend, so
  // those statements go unnamed, with their text, in the transaction itself.
  bool unnamed = false;
};

class Connection {
 public:
  Connection(Loop* addon, ConnectionDelegate* delegate, ConnectionConfig config);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts PQconnectStartParams; on an immediate failure returns the error and the
  // connection is already closed (no OnBroken follows).
  ErrorInfo Start();
  void Enqueue(OpPtr op);
  // Setup is complete: ordinary ops may go out.
  void MarkReady();
  // The statements that ops name by key, before MarkReady (setup picks them
  // from what it found of the table).
  void UseStatements(std::vector<Sql::Prepared> statements) {
    config_.statements = std::move(statements);
  }
  // Closes now; ops not yet settled are dropped without a callback (the caller has
  // drained them or the environment is going away). Idempotent.
  void Close();
  // Closes a connection that is not ready yet and hands back every op not yet
  // settled: none of its ordinary ops has been sent, so they may go elsewhere.
  std::deque<OpPtr> Withdraw();
  // Fails the connection with `error` (e.g. an unusable table found during setup):
  // the delegate gets OnBroken with every unsettled op.
  void Fail(ErrorInfo error);
  // Stops taking new ops and closes once the ones in flight have settled.
  void Retire();

  // Called by Addon once per loop turn for connections with unsent output.
  void Flush();

  bool ready() const { return ready_; }
  bool closed() const { return closed_; }
  size_t pending() const { return sent_.size() + others_.size() + writes_.size() + batch_.size(); }
  size_t pending_sent() const { return sent_.size() + batch_.size(); }
  // Whether an operation on this session id is queued or in flight here.
  bool HasPending(const std::string& key) const { return pending_keys_.count(key) != 0; }
  PGconn* pg() const { return conn_; }

 private:
  enum class Phase { kIdle, kConnecting, kOpen, kClosed };
  ~Connection();

  static void OnPoll(uv_poll_t* handle, int status, int events);
  void Poll(int status, int events);
  static void OnTimer(uv_timer_t* handle);
  static void OnHandleClosed(uv_handle_t* handle);

  void ContinueConnect();
  ErrorInfo StartAttempt();
  void DropAttempt();
  void ConnectFailed(ErrorInfo error);
  void NoteTargetFailed(const ErrorInfo& error);
  void HandleReadable();
  void SendQueued();
  void FlushOutput();
  bool ProcessResults();
  void StatementsDone();
  void Complete();
  bool WatchSocket(int events);
  void UpdateInterest();
  void UpdateDeadline();
  void UpdateRef();
  void MarkDirty();
  void CloseHandles();
  std::deque<OpPtr> TakeOps();
  void Settled(const Op& op);
  bool SendOne(Op& op);
  bool SendStatement(const Statement& s);
  using Queue = std::deque<OpPtr>;
  static size_t MergeRun(Queue::const_iterator first, Queue::const_iterator end, size_t limit,
                         size_t max_bytes);
  void TakeRiders(const Op& head, Queue* into);
  bool SendRun(Queue& queue, Queue::iterator* at, size_t n, bool sync);
  ErrorInfo LostError(const char* code);

  Loop* addon_;
  ConnectionDelegate* delegate_;
  ConnectionConfig config_;
  PGconn* conn_ = nullptr;  // owned; PQfinish in CloseHandles()
  Phase phase_ = Phase::kIdle;
  bool ready_ = false;
  bool retiring_ = false;
  bool closed_ = false;
  bool dirty_ = false;       // registered with Addon for the next flush
  bool want_write_ = false;  // PQflush reported unsent output
  int watched_events_ = 0;
  size_t target_ = 0;           // the host of config_.targets being tried
  std::string target_errors_;  // why each host tried before it failed
  int pending_closes_ = 0;     // uv handles still closing; delete this at 0
  uv_poll_t* poll_ = nullptr;  // owned; freed in OnHandleClosed
  uv_timer_t* timer_ = nullptr;
  const Op* deadline_for_ = nullptr;  // the head op the running deadline belongs to
  size_t head_statement_ = 0;         // which statement of sent_.front() results are for
  std::deque<OpPtr> others_;          // to send at the next flush (reads grouped, others alone)
  std::deque<OpPtr> writes_;          // the next write batch (plus reads that depend on it)
  std::deque<OpPtr> sent_;            // sent, results not all in yet; the head gets the next result
  std::deque<OpPtr> batch_;           // results in, waiting for their batch's Sync (commit)
  bool batch_in_flight_ = false;      // a write batch is sent and not yet committed
  // Session id -> its ops enqueued and not yet settled, and how many of them
  // write: a read of such a session must not overtake its writes.
  struct KeyCount {
    int ops = 0;
    int writes = 0;
  };
  std::unordered_map<std::string, KeyCount> pending_keys_;

  friend class Addon;
};

}  // namespace spg
