# ruff: noqa: E402, B007  (notebook-style script: imports live in their cells)
# %% [markdown]
# # histgym + Gymnasium: a PPO agent reshaping a signal histogram
#
# A port of the nextstat.gym PPO notebook to histgym. `histgym.make_histfactory_env` wraps a
# HistFactory workspace as a **Gymnasium environment** (a real `gymnasium.Env`, so
# Stable-Baselines3 accepts it):
# - **Observation**: current signal histogram yields
# - **Action**: multiplicative updates to each bin (`action_mode="logmul"`)
# - **Reward**: the discovery test statistic q0 (`reward_metric="q0"`)
#
# Run as a script: `python examples/ppo_gaussian_bump.py --total-timesteps 20000`.

# %%
import argparse

import matplotlib

matplotlib.use("Agg")  # files only; no display needed

import numpy as np

parser = argparse.ArgumentParser(description="PPO on the histgym Gaussian-bump environment")
parser.add_argument("--total-timesteps", type=int, default=20_000)
parser.add_argument("--figure", default="ppo_gaussian_bump.png", help="output figure file")
args, _ = parser.parse_known_args()  # tolerate a notebook kernel's own arguments

# %% [markdown]
# ## 1. Build a workspace
# Eight bins: a Gaussian signal bump over a falling background, observed data = signal +
# background (the same workspace as `histgym.example_workspace()`).

# %%
N_BINS = 8
edges = np.linspace(0.0, 1.0, N_BINS + 1)
centers = 0.5 * (edges[:-1] + edges[1:])
width = edges[1] - edges[0]

signal = 40.0 * np.exp(-0.5 * ((centers - 0.5) / 0.12) ** 2) * width
background = 200.0 * np.exp(-2.0 * centers) * width

workspace = {
    "channels": [{
        "name": "SR",
        "samples": [
            {"name": "signal", "data": signal.tolist(),
             "modifiers": [{"name": "mu", "type": "normfactor", "data": None}]},
            {"name": "background", "data": background.tolist(),
             "modifiers": [{"name": "bkg_norm", "type": "normsys",
                            "data": {"hi": 1.08, "lo": 0.92}}]},
        ],
    }],
    "observations": [{"name": "SR", "data": (signal + background).tolist()}],
    "measurements": [{"name": "meas", "config": {"poi": "mu", "parameters": []}}],
    "version": "1.0.0",
}
print(f"Signal:     {np.round(signal, 2)}")
print(f"Background: {np.round(background, 2)}")
print(f"S/sqrt(B):  {signal.sum() / background.sum() ** 0.5:.2f}")

# %% [markdown]
# ## 2. Create the Gymnasium environment

# %%
from histgym import make_histfactory_env

env = make_histfactory_env(
    workspace,
    channel="SR",
    sample="signal",
    reward_metric="q0",   # maximise the discovery test statistic
    max_steps=64,         # episode length
    action_scale=0.02,    # small perturbations per step
    action_mode="logmul", # multiplicative updates in log-space
    init_noise=0.0,       # start from nominal
)
print(f"Observation space: {env.observation_space}")
print(f"Action space:      {env.action_space}")

# %% [markdown]
# ## 3. Random agent baseline

# %%
np.random.seed(42)
obs, info = env.reset(seed=42)
total_reward = 0.0
rewards_random = []
for step in range(64):
    action = env.action_space.sample()
    obs, reward, terminated, truncated, info = env.step(action)
    total_reward += float(reward)
    rewards_random.append(total_reward)
    if terminated or truncated:
        break
print(f"Random agent - total reward: {total_reward:.3f}")
print(f"Random agent - final yields:  {np.round(obs, 2)}")

# %% [markdown]
# ## 4. Train a PPO agent (Stable-Baselines3)

# %%
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env


def make_env():
    return make_histfactory_env(
        workspace,
        channel="SR",
        sample="signal",
        reward_metric="q0",
        max_steps=64,
        action_scale=0.02,
        action_mode="logmul",
        init_noise=0.01,  # slight noise for exploration
    )


vec_env = make_vec_env(make_env, n_envs=4, seed=0)
agent = PPO("MlpPolicy", vec_env, learning_rate=3e-4, n_steps=128, batch_size=64, n_epochs=10,
            verbose=0, seed=0)
print("Training PPO agent...")
agent.learn(total_timesteps=args.total_timesteps)
print("Done!")

# %% [markdown]
# ## 5. Evaluate the trained agent

# %%
eval_env = make_env()
obs, info = eval_env.reset(seed=123)
total_reward_ppo = 0.0
rewards_ppo = []
yields_history = [obs.copy()]
for step in range(64):
    action, _ = agent.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, info = eval_env.step(action)
    total_reward_ppo += float(reward)
    rewards_ppo.append(total_reward_ppo)
    yields_history.append(obs.copy())
    if terminated or truncated:
        break
_, info0 = eval_env.reset(seed=123)
idle = 64 * info0["q0"]
print(f"PPO agent    - total reward: {total_reward_ppo:.3f}")
print(f"Random agent - total reward: {total_reward:.3f}")
print(f"Doing nothing - total reward: {idle:.3f}")
print(f"Improvement over random: "
      f"{(total_reward_ppo - total_reward) / abs(total_reward) * 100:.1f}%")

# %% [markdown]
# With the workspace's fixed observed data (= nominal signal + background), q0 is already
# maximal at the nominal shape, so there is little for an agent to learn here (see histgym's
# DESIGN notes). The well-posed variant is `data="asimov", budget="total"`: the expected
# significance of a signal shape with a fixed total yield. histgym's exact reward gradient
# gives a greedy reference policy for it:

# %%
from histgym.agents import greedy_policy, random_policy, run_episode

well_posed = make_histfactory_env(workspace, channel="SR", sample="signal", reward_metric="z0",
                                  data="asimov", budget="total", max_steps=64,
                                  action_scale=0.1, return_gradient=True)
greedy_return, greedy_info = run_episode(well_posed, greedy_policy(well_posed), seed=0)
random_return, _ = run_episode(well_posed, random_policy(well_posed), seed=0)
print(f"Asimov Z0 task - greedy return {greedy_return:.2f}, random return {random_return:.2f}; "
      f"final Z0 {greedy_info['z0']:.3f}")

# %% [markdown]
# ## 6. Visualise the results

# %%
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 3, figsize=(15, 4))
axes[0].plot(rewards_random, label="Random", color="gray", alpha=0.7)
axes[0].plot(rewards_ppo, label="PPO", color="#D4AF37", linewidth=2)
axes[0].set_xlabel("Step")
axes[0].set_ylabel("Cumulative Reward")
axes[0].set_title("Reward: Random vs PPO")
axes[0].legend()
axes[0].grid(alpha=0.2)

yields_arr = np.array(yields_history)
for i in range(N_BINS):
    axes[1].plot(yields_arr[:, i], alpha=0.6, linewidth=0.8)
axes[1].set_xlabel("Step")
axes[1].set_ylabel("Yield")
axes[1].set_title("Bin Yields Over Time")
axes[1].grid(alpha=0.2)

axes[2].bar(centers - width * 0.2, yields_history[0], width=width * 0.35, color="gray",
            alpha=0.6, label="Initial")
axes[2].bar(centers + width * 0.2, yields_history[-1], width=width * 0.35, color="#D4AF37",
            alpha=0.8, label="Optimised (PPO)")
axes[2].set_xlabel("Bin Center")
axes[2].set_ylabel("Signal Yield")
axes[2].set_title("Initial vs Optimised Signal")
axes[2].legend()
axes[2].grid(alpha=0.2)

fig.tight_layout()
fig.savefig(args.figure, dpi=100)
print(f"Figure saved to {args.figure}")

# %% [markdown]
# ## 7. Systematic impact before/after
# Ranking of the nuisance parameters by their impact on mu (cabinetry's post-fit
# definitions, under nextstat's key names), on the original model and with the agent's
# final signal yields.

# %%
import histgym
from histgym.interpret import rank_impact

model = histgym.from_pyhf(workspace)
print("Ranking (original model):")
for r in rank_impact(model, top_n=5):
    print(f"  {r['rank']}. {r['name']:20s} impact={r['total_impact']:.4f}")
optimised = model.with_sample_yields("SR", "signal", yields_history[-1])
print("Ranking (PPO-optimised signal yields):")
for r in rank_impact(optimised, top_n=5):
    print(f"  {r['rank']}. {r['name']:20s} impact={r['total_impact']:.4f}")
