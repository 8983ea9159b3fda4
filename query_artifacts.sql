-- Queries to start from, over the artifact tables: `meshinsights sql -f query_artifacts.sql`
-- (or paste one into `meshinsights sql`). Every Delta table is a view of its CURRENT version:
--   <pipeline>__<table>   one pipeline's table, e.g. minimal__telemetry, hvac_power__issues;
--   <table>               the table across every pipeline that has it, e.g. telemetry;
--   meshinsights_history  one row per Delta commit: run_id, step, window, row counts.
-- Times are UTC. A statement after a `-- requires: t1, t2` line is skipped, with a note, when
-- one of those tables is not in the store yet (the hvac_power pipeline produces issues,
-- thresholds, anomalies...), so the file runs on a day-one store as well as a full one.

-- Per-machine daily averages of every metric (raw telemetry).
-- requires: telemetry
SELECT machine_id,
       date_trunc('day', ts)::DATE AS day,
       metric,
       round(avg(value), 3) AS avg_value,
       round(min(value), 3) AS min_value,
       round(max(value), 3) AS max_value,
       count(*) AS samples
FROM telemetry
GROUP BY ALL
ORDER BY machine_id, day, metric;

-- Hourly temperature per machine (the day-one pipeline's curated table), last 48 hours of data.
-- requires: temperature_hourly
SELECT machine_id, ts AS hour, round(mean, 2) AS mean_temp, round(min, 2) AS min_temp,
       round(max, 2) AS max_temp, count AS samples
FROM temperature_hourly
WHERE ts >= (SELECT max(ts) FROM temperature_hourly) - INTERVAL 47 HOUR
ORDER BY machine_id, hour;

-- Top issues: how often each well-known check fired, by severity, across the fleet.
-- requires: issues
SELECT "check",
       severity,
       count(*) AS windows,
       count(DISTINCT machine_id) AS machines,
       min(ts)::DATE AS first_window,
       max(ts)::DATE AS last_window,
       any_value(message) AS example
FROM issues
GROUP BY "check", severity
ORDER BY severity = 'critical' DESC, windows DESC
LIMIT 20;

-- Threshold history: each machine's alarm band per stage, window by window, and how far the
-- centre moved since the previous window.
-- requires: thresholds
SELECT machine_id,
       metric,
       stage,
       ts::DATE AS window_start,
       method,
       round(lower, 3) AS lower,
       round(center, 3) AS center,
       round(upper, 3) AS upper,
       n_cycles,
       round(center - lag(center) OVER (PARTITION BY machine_id, metric, stage ORDER BY ts), 4)
           AS center_change
FROM thresholds
ORDER BY machine_id, metric, stage, window_start;

-- Thresholds actually pushed to the alert database (only windows with low power variance).
-- requires: threshold_updates
SELECT machine_id, metric, stage, valid_from, round(lower, 3) AS lower,
       round(upper, 3) AS upper, variance_class, round(cv, 4) AS cv
FROM threshold_updates
ORDER BY machine_id, stage, valid_from;

-- Anomalies per week: flagged points of the robust z-score detector per machine and metric.
-- requires: anomalies
SELECT machine_id,
       date_trunc('week', ts)::DATE AS week,
       metric,
       count(*) FILTER (WHERE flagged) AS flagged,
       count(*) AS scored,
       round(100.0 * count(*) FILTER (WHERE flagged) / count(*), 3) AS pct_flagged,
       round(max(abs(score)), 2) AS max_abs_score
FROM anomalies
GROUP BY ALL
ORDER BY machine_id, week, metric;

-- Multivariate anomalies per week (PCA T² / Q) and the metric that contributed most.
-- requires: anomalies_mv
SELECT machine_id,
       date_trunc('week', ts)::DATE AS week,
       count(*) FILTER (WHERE flagged) AS flagged,
       count(*) AS scored,
       mode(top_metric) FILTER (WHERE flagged) AS usual_top_metric
FROM anomalies_mv
GROUP BY ALL
ORDER BY machine_id, week;

-- The GenAI analysis in force for each machine's latest window.
-- requires: genai_analysis
SELECT machine_id, ts::DATE AS window_start, overall_severity, provider, model, status, summary
FROM genai_analysis
WHERE current
QUALIFY row_number() OVER (PARTITION BY machine_id ORDER BY ts DESC, analyzed_at DESC) = 1
ORDER BY machine_id;

-- Data quality: quarantined rows per machine, rule and reason.
-- requires: quarantine
SELECT machine_id, source_table, rule, reason, count(*) AS rows
FROM quarantine
GROUP BY ALL
ORDER BY rows DESC, machine_id;

-- Data quality per ingest window, from the ingest commits (the latest commit of each window):
-- rows in = clean + quarantined + duplicates removed.
SELECT pipeline,
       machines,
       window_start::DATE AS day,
       rows_in,
       rows_clean,
       rows_quarantined,
       duplicates_removed,
       round(100.0 * rows_clean / nullif(rows_in, 0), 2) AS pct_clean
FROM meshinsights_history
WHERE step = 'ingest' AND table_name = 'telemetry'
QUALIFY row_number() OVER (PARTITION BY pipeline, machines, window_start ORDER BY version DESC) = 1
ORDER BY pipeline, machines, day;

-- Run history: a `run_history` view with one row per run (run id), built from the Delta commit
-- metadata every step writes; a run of the local runner or one Airflow task run.
CREATE OR REPLACE TEMP VIEW run_history AS
SELECT run_id,
       pipeline,
       any_value(machines) AS machines,
       min(window_start) AS window_start,
       max(window_end) AS window_end,
       min(committed_at) AS first_commit,
       max(committed_at) AS last_commit,
       string_agg(DISTINCT step, ', ' ORDER BY step) AS steps,
       count(*) AS commits,
       sum(rows_written) AS rows_written
FROM meshinsights_history
WHERE run_id IS NOT NULL
GROUP BY run_id, pipeline;

-- The 20 most recent runs.
SELECT run_id, pipeline, machines, window_start::DATE AS first_day,
       (window_end - INTERVAL 1 MICROSECOND)::DATE AS last_day, commits, rows_written,
       last_commit
FROM run_history
ORDER BY last_commit DESC
LIMIT 20;
