//! A repository to install rbee from over SSH (a stand-in shaped like rbee's).

use cucumber::given;

use crate::world::Rbee;

#[given(regex = r#"^a git repository of rbee with a branch "(\w+)"$"#)]
async fn repository(world: &mut Rbee, branch: String) {
    rbee_testkit::stand_in_repo(&world.home.join("repo"), &branch);
}
