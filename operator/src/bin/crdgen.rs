//! Prints the CacheCluster CRD; `crds/cachecluster.yaml` is this output, checked in.

fn main() -> anyhow::Result<()> {
    print!("{}", ringcache_operator::crd::crd_yaml()?);
    Ok(())
}
