pub mod dashboards;
