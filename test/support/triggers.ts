// Triggers that make a test table slow on purpose, installed with query() (pg).
import { query } from './db';

/**
 * A deferred constraint trigger on `table` (test server `server`): the commit of a transaction
 * that wrote a row whose data is 'slow-commit' takes `seconds` (the statements stay fast).
 */
export async function addSlowCommit(table: string, seconds: number, server = 0): Promise<void> {
  await query(
    server,
    `CREATE FUNCTION ${table}_slow() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF NEW.sess_data = 'slow-commit' THEN PERFORM pg_sleep(${seconds}); END IF;
       RETURN NULL;
     END $$`,
  );
  await query(
    server,
    `CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT OR UPDATE ON ${table}
     DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ${table}_slow()`,
  );
}
