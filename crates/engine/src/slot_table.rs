//! A table whose rows are swapped in per window and read when a plan executes, not when
//! it is planned, so each rule is planned once and its physical plan re-run on every
//! window.
//!
//! DataFusion's `MemTable` copies its batches into the physical plan at planning time,
//! which forces a new physical plan per window; for the small tables of one window that
//! planning costs several times the query itself. A slot-table plan reports unknown
//! statistics, so nothing the optimizer decides depends on one window's data.

use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{project_schema, Result};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    ReplaceChildrenOptions,
};

type Rows = Arc<RwLock<Vec<RecordBatch>>>;

/// The shared slot: `set` replaces the rows every plan over this table will read next.
#[derive(Debug)]
pub(crate) struct SlotTable {
    schema: SchemaRef,
    rows: Rows,
}

impl SlotTable {
    pub fn new(schema: SchemaRef) -> SlotTable {
        SlotTable {
            schema,
            rows: Arc::default(),
        }
    }

    pub fn set(&self, batches: Vec<RecordBatch>) {
        // A poisoned lock only means a reader panicked; the rows are replaced whole.
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        *rows = batches;
    }
}

#[async_trait]
impl TableProvider for SlotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projected = project_schema(&self.schema, projection)?;
        let properties = PlanProperties::new(
            EquivalenceProperties::new(projected.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(SlotScanExec {
            rows: self.rows.clone(),
            schema: projected,
            projection: projection.cloned(),
            properties: Arc::new(properties),
        }))
    }
}

/// Scans whatever the slot holds at `execute` time.
#[derive(Debug)]
struct SlotScanExec {
    rows: Rows,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for SlotScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SlotScanExec: projection={:?}", self.projection)
    }
}

impl ExecutionPlan for SlotScanExec {
    fn name(&self) -> &'static str {
        "SlotScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let batches = self.rows.read().unwrap_or_else(|e| e.into_inner()).clone();
        Ok(Box::pin(MemoryStream::try_new(
            batches,
            self.schema.clone(),
            self.projection.clone(),
        )?))
    }
}
