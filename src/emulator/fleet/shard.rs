//! `--shard K/M`: the K-th of M slices of a fleet's numbers 1 to N, so that M processes on one
//! host or many share one fleet without a coordinator. Slices are contiguous and differ in size
//! by at most one; together they hold every number exactly once.

use std::ops::RangeInclusive;
use std::str::FromStr;

/// One slice of M, K counted from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: u32,
    pub m: u32,
}

impl Shard {
    /// The whole fleet.
    pub const ALL: Shard = Shard { k: 1, m: 1 };

    /// The numbers of this slice of 1..=`count` (empty when there are more slices than charge
    /// points).
    pub fn range(&self, count: u64) -> RangeInclusive<u64> {
        let m = u64::from(self.m);
        let k = u64::from(self.k);
        let start = (k - 1) * count / m + 1;
        let end = k * count / m;
        start..=end
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.m)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let usage = || {
            format!(
                "'{s}': write K/M, the K-th of M slices with K from 1 to M (such as 1/4; in a Kubernetes Indexed Job, $((JOB_COMPLETION_INDEX + 1))/M)"
            )
        };
        let (k, m) = s.split_once('/').ok_or_else(usage)?;
        let k: u32 = k.trim().parse().map_err(|_| usage())?;
        let m: u32 = m.trim().parse().map_err(|_| usage())?;
        if m == 0 || k == 0 || k > m {
            return Err(usage());
        }
        Ok(Shard { k, m })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_every_number_once() {
        for count in [1u64, 7, 10, 1000, 10_001] {
            for m in [1u32, 2, 3, 4, 7, 16] {
                let mut seen = Vec::new();
                for k in 1..=m {
                    let r = Shard { k, m }.range(count);
                    let len = r.clone().count() as u64;
                    assert!(len >= count / u64::from(m) && len <= count / u64::from(m) + 1);
                    seen.extend(r);
                }
                assert_eq!(seen, (1..=count).collect::<Vec<_>>(), "count {count} m {m}");
            }
        }
        assert_eq!(Shard { k: 2, m: 4 }.range(10), 3..=5);
        assert_eq!(Shard::ALL.range(5), 1..=5);
    }

    #[test]
    fn shards_parse_or_say_how_to_write_them() {
        assert_eq!("3/4".parse::<Shard>(), Ok(Shard { k: 3, m: 4 }));
        for bad in ["0/4", "5/4", "1/0", "1", "a/b", "-1/4"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("K-th of M") && e.contains(bad), "{e}");
        }
    }
}
