// What goes out on one connection and in which order: the operations, their
// queues, the order of each session's operations, the merging of neighbours
// into one statement, group-commit batches, and what becomes of each operation
// when its batch's Sync arrives (settled, sent again, or sent again alone).
//
// It knows nothing of libpq's connection or of the event loop: Connection
// owns a Pipeline, sends through the Wire interface it implements, and tells
// it when the head operation's results are in and when a Sync has arrived.
// The decision made at a Sync is the pure function Decide(), over plain data,
// so it is unit-tested without a server (test/05.pipeline.settle.test.ts).
//
// Thread: that of its Connection (the JS thread of one environment).
#pragma once

#include <libpq-fe.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "errors.h"

namespace spg {

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

// Where an op stands on its connection. Each stage but kIdle says which of
// the pipeline's queues holds it; only Pipeline changes it (Pipeline::Move).
//
//   kIdle -> kQueued -> kSent -> kCommitting -> kQueued (retried) or kIdle (settled)
//                    -> kEndsBatch -----------> kQueued or kIdle
//                    -> kRiding --------------> kQueued or kIdle
//   any -> kIdle (handed back: the connection failed or closed)
enum class Stage : uint8_t {
  kIdle,        // on no connection's queues: new, settled or handed back
  kQueued,      // waits in its lane to be sent
  kSent,        // sent; ops of its batch follow it, so no Sync comes after it
  kEndsBatch,   // sent; the Sync after it ends its batch
  kRiding,      // sent within the merged statement of an op before it, which it follows
  kCommitting,  // its results are in; it waits for its batch's Sync (the commit)
};

// What the server said of an op so far, besides its results. PostgreSQL
// reports one failure per batch: of a statement, or of the COMMIT after the
// last one; what follows a failure until the Sync is skipped (aborted).
enum class Outcome : uint8_t {
  kOk,              // no failure (yet)
  kFailed,          // one of its statements failed: `error`
  kFailedAtCommit,  // its batch's COMMIT failed after its statements: `error`
  kAborted,         // skipped after an earlier failure in its batch (perhaps its own)
};

// Which queue an op waits in, decided when it is enqueued.
enum class Lane : uint8_t {
  kOthers,  // sent at the next flush: reads grouped, anything else alone
  kWrites,  // the next write batch (group commit), and reads that depend on it
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
  Outcome outcome = Outcome::kOk;

  Stage stage() const { return stage_; }

  // Forgets what happened to it on the wire, before it is sent again.
  void ClearOutcome() {
    error = {};
    for (ResultPtr& r : results) r.reset();
    row = 0;
    outcome = Outcome::kOk;
    riders_ = 0;
  }

 private:
  // Kept by its Pipeline.
  friend class Pipeline;
  Stage stage_ = Stage::kIdle;
  Lane lane_ = Lane::kOthers;
  // Sent alone, to find which op a COMMIT or merged statement's failure was
  // for: a send constraint that holds for every later resend on its connection.
  bool solo_ = false;
  size_t riders_ = 0;  // ops after it whose statements it carried (merged)
};
using OpPtr = std::unique_ptr<Op>;

// --- the decision at the end of a batch: pure, over plain data ---

// One op of a batch, in the order sent, as its results left it.
struct SyncOutcome {
  bool error = false;      // it has an error of its own
  bool aborted = false;    // PostgreSQL skipped it after an earlier failure in its batch
  bool at_commit = false;  // its error came at COMMIT, after its statements
  size_t riders = 0;       // ops after it that rode on its merged statement
};

// How the batch ended: its Sync arrived, or the connection was lost first.
enum class BatchEnd { kSync, kLost };

enum class Decision {
  kSettle,       // answered with its results or its own error
  kRetry,        // rolled back for a neighbour's failure: sent again, in its place
  kResendAlone,  // the failure names no op (COMMIT, merged statement): sent again alone
  kHandBack,     // the connection is gone: to the delegate, to resend or fail
};

// What becomes of each op of `batch`. When a Sync ends it: if one op failed,
// PostgreSQL rolled the whole batch back, so the failed op settles with its
// error and the others go again, in their place, so one bad write neither
// fails nor loses its neighbours. A failure at COMMIT (a deferred constraint,
// a serialization failure) or of a merged statement names no op: each op
// involved is sent again alone to find the culprit. When the connection is
// lost first, whether the batch committed is unknown: every op is handed back.
std::vector<Decision> Decide(const std::vector<SyncOutcome>& batch, BatchEnd end);

// --- the pipeline ---

// How a Pipeline puts statements on the wire (Connection, over libpq).
class Wire {
 public:
  virtual ~Wire() = default;
  virtual bool Send(const Statement& s) = 0;
  virtual bool Sync() = 0;
};

class Pipeline {
 public:
  Pipeline(size_t max_in_flight, size_t max_batch)
      : max_in_flight_(max_in_flight), max_batch_(max_batch) {}
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  void Enqueue(OpPtr op);

  // Sends what may go now (all of it once `ready`, else setup ops only).
  enum class SendResult { kNothing, kSent, kFailed };
  SendResult SendQueued(Wire& wire, bool ready);
  // Whether SendQueued would send something at once once ready.
  bool CanSend() const { return !others_.empty() || (!writes_.empty() && !batch_in_flight_); }
  bool HasQueued() const { return !others_.empty() || !writes_.empty(); }

  // The op the next result is for: the oldest one sent.
  Op* head() const { return sent_.empty() ? nullptr : sent_.front().get(); }
  // The head's statements have all their results and no Sync follows it: it
  // waits for its batch's Sync (with the ops that rode on its statement).
  void HeadStatementsDone();
  // A Sync arrived: decides for each op of the batch it ends; those to retry
  // go back to the front of their lane; returns the settled ones, in order.
  std::deque<OpPtr> SyncArrived();
  // Every op not yet settled, in submission order, its outcome cleared (the
  // connection failed or closed). The pipeline is empty afterwards.
  std::deque<OpPtr> TakeAll();

  size_t pending() const { return sent_.size() + others_.size() + writes_.size() + batch_.size(); }
  size_t pending_sent() const { return sent_.size() + batch_.size(); }
  // Whether an operation on this session id is queued or in flight here.
  bool HasPending(const std::string& key) const { return pending_keys_.count(key) != 0; }

 private:
  using Queue = std::deque<OpPtr>;
  static void Move(Op& op, Stage to) { op.stage_ = to; }
  void Settled(const Op& op);
  static std::vector<SyncOutcome> Outcomes(const Queue& ops);
  static size_t MergeRun(Queue::const_iterator first, Queue::const_iterator end, size_t limit,
                         size_t max_bytes);
  void TakeRiders(const Op& head, Queue* into);
  bool SendRun(Wire& wire, Queue& queue, Queue::iterator* at, size_t n, bool sync);

  size_t max_in_flight_;
  size_t max_batch_;  // ops per Sync; 1 = every op commits on its own
  Queue others_;      // Lane::kOthers, waiting
  Queue writes_;      // Lane::kWrites, waiting
  Queue sent_;        // sent, results not all in yet; the head gets the next result
  Queue batch_;       // results in, waiting for their batch's Sync (commit)
  bool batch_in_flight_ = false;  // a write batch is sent and not yet committed
  // Session id -> its ops enqueued and not yet settled, and how many of them
  // write: a read of such a session must not overtake its writes.
  struct KeyCount {
    int ops = 0;
    int writes = 0;
  };
  std::unordered_map<std::string, KeyCount> pending_keys_;
};

}  // namespace spg
